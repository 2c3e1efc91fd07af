"""Typical messages a PBX edge sees, shared by the benchmarks."""

REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1712345678;rport\r\n"
    b'From: "Reception" <sip:2001@pbx.example.com>;tag=1834027512\r\n'
    b'To: "Reception" <sip:2001@pbx.example.com>\r\n'
    b"Call-ID: 0_2841374081@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b'Contact: <sip:2001@192.0.2.10:5060>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-805ec0aa1b2c>"\r\n'
    b'Authorization: Digest username="2001", realm="pbx.example.com", nonce="6f1b3c2a0d", '
    b'uri="sip:pbx.example.com", response="c6bd2b2e8a0a4c5f9a1e2d3c4b5a6978", algorithm=MD5\r\n'
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE\r\n"
    b"Content-Length: 0\r\n\r\n"
)

INVITE = (
    b"INVITE sip:442071234567@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK2049583342;rport\r\n"
    b'From: "Reception" <sip:2001@pbx.example.com>;tag=2993726154\r\n'
    b"To: <sip:442071234567@pbx.example.com>\r\n"
    b"Call-ID: 1_3184762203@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:2001@192.0.2.10:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
    b"Allow-Events: talk,hold,conference,refer,check-sync\r\n"
    b"Supported: replaces\r\n"
    b"Content-Length: 302\r\n\r\n"
    b"v=0\r\n"
    b"o=- 20010 20010 IN IP4 192.0.2.10\r\n"
    b"s=SDP data\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 11780 RTP/AVP 0 8 18 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

OPTIONS = (
    b"OPTIONS sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---8a4c1e0b2d3f4a5b;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:pbx.example.com>\r\n"
    b"From: <sip:keepalive@198.51.100.7>;tag=8f2e1d4c\r\n"
    b"Call-ID: 5b7c9d1e3f5a7b9c@198.51.100.7\r\n"
    b"CSeq: 41 OPTIONS\r\n"
    b"Contact: <sip:keepalive@198.51.100.7:5060>\r\n"
    b"User-Agent: carrier-sbc\r\n"
    b"Content-Length: 0\r\n\r\n"
)

TYPICAL = {"REGISTER": REGISTER, "INVITE (SDP)": INVITE, "OPTIONS": OPTIONS}
