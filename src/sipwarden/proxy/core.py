"""The stateless proxy (RFC 3261 §16.11), sans I/O.

Operations: ``from_client(data, source, local)`` for a message that arrived on
a public listener, ``from_backend(data, source)`` for one from the PBX. Each
returns the actions to take (send these bytes to this flow, or drop, and why);
the asyncio adapters in ``edge/`` carry them out.

The plan, for a request from a client:
  Max-Forwards checked (483 at zero) and decremented; our own Route entries
  removed (loose routing); ``received``/``rport`` set on the client's Via
  (RFC 3581); our Via added with a branch derived from the client's, so that
  retransmissions and CANCEL get the same one, and carrying the signed flow
  token the answer must go back to; REGISTER gets a Path and dialog-creating
  requests a Record-Route (two when the two sides differ), both carrying the
  token so the PBX's later requests find the phone. Then it goes to the
  backend: requests from outside never go anywhere else.
For a message from the backend:
  a response must carry our Via on top; it is popped and the answer goes to
  the flow in its token, with Server/User-Agent neutralised. A request (an
  incoming call, a BYE, a NOTIFY) must start with one of our Route entries;
  the flow token in it says which client, and anything else is dropped.

Nothing here keeps state between messages, so any number of workers can run
it side by side and a restart loses nothing.
"""

from __future__ import annotations

from typing import Final

from ..sip import Address, Message, Peek, SipError, make_response, parse
from ..sip.address import name_addr_parts
from ..sip.build import reason_phrase
from ..sip.text import format_params
from ..values import Peer
from . import splice
from .base import (
    _TOKEN_CACHE,
    AUTH_FLAG,
    BRANCH_PREFIX,
    DIALOG_CREATING,
    SEAL_PARAM,
    TOKEN_PARAM,
    Action,
    Drop,
    Local,
    ProxySettings,
    Send,
    branch_of,
    flow_words,
)
from .tokens import FlowTokens


def _response_tag(msg: Message) -> str:
    """The To tag of an answer the edge gives itself: the same for every
    retransmission of the request."""
    tag = msg.from_.tag if msg.from_ is not None else None
    return branch_of(msg.call_id or "", tag or "")[len(BRANCH_PREFIX) :][:12]


_RECENT_FLOWS: Final = 4_096  # of the _TOKEN_CACHE flows, the latest kept as Peers


class StatelessProxy:
    """See the module docstring. Counters of drops by reason are kept in
    ``drops`` for the metrics layer."""

    def __init__(self, settings: ProxySettings, tokens: FlowTokens) -> None:
        self.settings = settings
        self.tokens = tokens
        self.drops: dict[str, int] = {}
        self.fast_path = 0  # messages that took the splice path
        inside = settings.internal[settings.backend.transport]
        # the parts of our own lines that never change, written once
        self.via_prefix = (
            f"Via: SIP/2.0/{settings.backend.transport.upper()} {inside.hostport()};branch="
        )
        self._path_suffix = f"@{inside.hostport()};transport={inside.transport};lr>\r\n"
        # the tokens remembered: the last _RECENT_FLOWS flows and tokens as
        # they come (Peers: the hot path's hits cost no string), in front of
        # tables of strings (flow text <-> token, _TOKEN_CACHE each) that the
        # garbage collector never tracks, so a spoofed flood's 65,536 flows
        # add nothing to what a full collection walks (65,536 Peers and a
        # dict given a fresh tuple at each new flow added 5-10 ms to each)
        self._token_of: dict[Peer, str] = {}
        self._flow_of: dict[str, Peer] = {}
        self._token_of_text: dict[str, str] = {}
        self._text_of_token: dict[str, str] = {}
        self._sealed_contacts: dict[str, str] = {}
        outside = [*settings.public.values(), *settings.listeners]
        self._public = {(loc.host.strip("[]").lower(), loc.port) for loc in outside}
        locals_ = [*settings.internal.values(), *outside]
        self._ours = {(loc.host.strip("[]").lower(), loc.port) for loc in locals_}

    # ------------------------------------------------------------------ helpers

    def path_line(self, token: str) -> str:
        return f"Path: <sip:{token}{self._path_suffix}"

    def token_for(self, flow: Peer) -> str:
        """The signed token of a flow, remembered (bounded) to spare the HMAC."""
        token = self._token_of.get(flow)
        if token is None:
            text = f"{flow.transport} {flow.host} {flow.port} {flow.conn}"
            token = self._token_of_text.get(text)
            if token is None:
                token = self.tokens.encode(flow)
                if len(self._token_of_text) >= _TOKEN_CACHE:
                    self._token_of_text.clear()
                self._token_of_text[text] = token
                # ours, so its answer is read back without the HMAC (a spoofed
                # flood is all new flows: each cost an encode and a decode)
                if len(self._text_of_token) >= _TOKEN_CACHE:
                    self._text_of_token.clear()
                self._text_of_token[token] = text
            if len(self._token_of) >= _RECENT_FLOWS:
                self._token_of.clear()
            self._token_of[flow] = token
        return token

    def flow_of(self, token: str | None) -> Peer | None:
        """The flow of a token we issued (verified once, then remembered)."""
        if token is None:
            return None
        flow = self._flow_of.get(token)
        if flow is None:
            text = self._text_of_token.get(token)
            if text is not None:
                transport, host, port, conn = text.split(" ")
                flow = Peer(transport, host, int(port), int(conn))
            else:
                flow = self.tokens.decode(token)
                if flow is None:
                    return None
                if len(self._text_of_token) >= _TOKEN_CACHE:
                    self._text_of_token.clear()
                self._text_of_token[token] = f"{flow.transport} {flow.host} {flow.port} {flow.conn}"
            if len(self._flow_of) >= _RECENT_FLOWS:
                self._flow_of.clear()
            self._flow_of[token] = flow
        return flow

    def _drop(self, reason: str) -> list[Action]:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return [Drop(reason)]

    def _is_ours(self, addr: Address) -> bool:
        uri = addr.uri
        if uri is None or not uri.is_sip or uri.host is None:
            return False
        if self.tokens.decode(uri.user) is not None:
            return True
        return (uri.host_bare or "", uri.port or 5060) in self._ours

    def _is_backend(self, addr: Address) -> bool:
        """A Route entry naming the PBX itself (its own Record-Route)."""
        uri, backend = addr.uri, self.settings.backend
        return (
            uri is not None
            and uri.is_sip
            and (uri.host_bare or "") == backend.host
            and (uri.port or 5060) == backend.port
        )

    def _pop_our_routes(self, msg: Message) -> Peer | None:
        """Remove the leading Route entries that point at us; the flow of the
        first signed one, if any."""
        flow = None
        while True:
            routes = msg.routes
            if not routes or not self._is_ours(routes[0]):
                return flow
            uri = routes[0].uri
            if flow is None and uri is not None:
                flow = self.tokens.decode(uri.user)
            msg.pop_value("route")

    def _hide_route_set(self, msg: Message, flow: Peer, *, request: bool) -> None:
        """Topology hiding: the client gets one Record-Route, our own entry
        facing it, which carries the whole recorded route sealed inside. The
        PBX's address and our inside address never reach it; the route set is
        restored from the seal when the client uses it (``_restore_route_set``)."""
        routes = msg.record_routes
        if len(routes) < 2:
            return
        for entry in routes:
            uri = entry.uri
            if (
                uri is not None
                and (uri.host_bare or "", uri.port or 5060) in self._public
                and self.flow_of(uri.user) == flow
            ):
                break
        else:
            return
        values = [r.raw for r in routes]
        # the client's route set: a callee uses the list as it is, a caller reversed
        route_set = values if request else values[::-1]
        msg.remove_header("record-route")
        msg.prepend_value("record-route", f"<{uri.raw};{SEAL_PARAM}={self.tokens.seal(route_set)}>")

    def _restore_route_set(self, msg: Message, key: str) -> bool:
        """Put back the route set sealed in a client's Route (or, in its
        answer, Record-Route). False if the seal is forged."""
        values = msg.get_all(key)
        if not values or SEAL_PARAM not in values[0]:
            return True
        try:
            first = msg.routes[0] if key == "route" else msg.record_routes[0]
        except SipError:
            return True  # (validation has parsed them already; cannot happen)
        blob = first.uri.param(SEAL_PARAM) if first.uri is not None else None
        if blob is None:
            return True
        entries = self.tokens.unseal(blob)
        if entries is None:
            return False
        msg.remove_header(key)
        for value in reversed(entries):
            msg.prepend_value(key, value)
        return True

    def hidden_contact(self, flow: Peer, uri: str, header_params: str) -> str | None:
        """A Contact value that names the edge instead of ``uri``: the
        original sealed inside, put back into the Request-URI of the
        requests that target it (``_restore_request_uri``)."""
        outside = self.settings.public.get((flow.transport, ":" in flow.host))
        if outside is None:
            return None
        seal = self._sealed_contacts.get(uri)  # a PBX has few Contacts: seal each once
        if seal is None:
            if len(self._sealed_contacts) >= _TOKEN_CACHE:
                self._sealed_contacts.clear()
            seal = self._sealed_contacts[uri] = self.tokens.seal([uri])
        return f"<sip:sw@{outside.hostport()};transport={outside.transport};{SEAL_PARAM}={seal}>{header_params}"

    def _hide_contacts(self, msg: Message, flow: Peer) -> None:
        """The PBX's Contact (its address) becomes the edge's; the bindings in
        an answer to REGISTER are the phone's own and stay."""
        if not msg.is_request and msg.cseq is not None and msg.cseq.method == "REGISTER":
            return
        values = msg.get_all("contact")
        if not values:
            return
        hidden = []
        for value, contact in zip(values, msg.contacts, strict=True):
            if contact.uri is None:
                return  # a wildcard: nothing to hide in a message that has one
            parts = name_addr_parts(value)
            params = parts.header_params if parts is not None else format_params(contact.params)
            new = self.hidden_contact(flow, contact.uri.raw, params)
            if new is None:
                return
            hidden.append(new)
        msg.replace_header("contact", ", ".join(hidden))

    def _restore_request_uri(self, msg: Message) -> bool:
        """A request aimed at a Contact we hid goes to the original again.
        False if the seal is forged."""
        text = msg.uri_text or ""
        if SEAL_PARAM not in text:
            return True
        uri = msg.uri
        if (uri.host_bare or "", uri.port or 5060) not in self._public:
            return True
        sealed = self.tokens.unseal(uri.param(SEAL_PARAM))
        if sealed is None or len(sealed) != 1:
            return False
        msg.set_request_uri(sealed[0])
        return True

    def _neutralise(self, msg: Message) -> None:
        """Hide the PBX's identity: no Server/User-Agent of its own leaves."""
        for name in ("server", "user-agent"):
            if name in msg:
                if self.settings.server_header:
                    msg.replace_header(name, self.settings.server_header)
                else:
                    msg.remove_header(name)

    def _max_forwards(self, msg: Message) -> int:
        """The Max-Forwards to send on (-1: answer 483)."""
        value = msg.max_forwards
        if value is None:
            return self.settings.default_max_forwards - 1
        if value <= 0:
            return -1
        return min(value, 255) - 1

    def _record_route(
        self, msg: Message, towards_callee: Local, towards_caller: Local, token: str
    ) -> None:
        """Record-Route ourselves, twice when the two sides differ (double
        record-routing): the callee uses the list top-down, the caller
        bottom-up, so the entry the callee can reach goes on top."""
        entries = (
            [towards_callee]
            if towards_callee == towards_caller
            else [towards_callee, towards_caller]
        )
        for local in reversed(entries):
            msg.prepend_value("record-route", self._route_uri(local, token))

    @staticmethod
    def _route_uri(local: Local, token: str) -> str:
        return f"<sip:{token}@{local.hostport()};transport={local.transport};lr>"

    def _reply_flow(self, msg: Message, source: Peer) -> Peer:
        """Where the answer to this request goes (RFC 3261 §18.2.2, RFC 3581)."""
        if source.is_stream:
            return source
        via = msg.via
        assert via is not None
        if via.rport is not None:
            return source
        return Peer("udp", source.host, via.port or 5060)

    # ------------------------------------------------------------ from clients

    def from_client(
        self, data: bytes, source: Peer, local: Local, view: Peek | None = None
    ) -> list[Action]:
        """A message from a client. With the ``peek`` view of the data, the
        common shapes take the splice path (see ``splice``)."""
        if view is not None and view.layout is not None and view.method is not None:
            fast = splice.client_request(self, data, view, source, local)
            if fast is not None:
                self.fast_path += 1
                return fast
        try:
            msg = parse(data).validate()
        except SipError as exc:
            return self._drop(f"malformed:{exc.reason}")
        if msg.is_request:
            return self._client_request(msg, source, local)
        return self._client_response(msg)

    def _client_request(self, msg: Message, source: Peer, local: Local) -> list[Action]:
        forwards = self._max_forwards(msg)
        if forwards < 0:
            if msg.method == "ACK":
                return self._drop("too-many-hops")
            answer = make_response(msg, 483, reason_phrase(483), to_tag=_response_tag(msg))
            return [Send(self._reply_flow(msg, source), answer.to_bytes())]
        domains = self.settings.domains
        if (
            domains
            and msg.to is not None
            and msg.to.tag is None
            and msg.uri.host_bare not in domains
        ):
            return self._drop("foreign-domain")
        if not self._restore_route_set(msg, "route"):
            return self._drop("forged-route-seal")
        if not self._restore_request_uri(msg):
            return self._drop("forged-contact-seal")
        msg.set_max_forwards(forwards)
        self._pop_our_routes(msg)
        routes = msg.routes
        if routes and not self._is_backend(routes[0]):
            # a Route to somewhere else: the PBX would relay it there
            return self._drop("foreign-route")

        via = msg.via
        assert via is not None
        reply = self._reply_flow(msg, source)
        if via.rport == "" or via.host.strip("[]").lower() != source.host:
            msg.set_via_param("received", source.host)
        if via.rport == "":
            msg.set_via_param("rport", str(source.port))

        backend = self.settings.backend
        inside = self.settings.internal[backend.transport]
        token = self.token_for(reply)
        branch = via.branch or ""
        if branch.startswith("z9hG4bK") and len(branch) > 7:
            key = branch_of(branch, via.sent_by, *flow_words(source))
        else:  # RFC 2543 peers: hash what identifies the transaction (§16.11)
            from_, to, cseq = msg.from_, msg.to, msg.cseq
            key = branch_of(
                msg.uri_text or "",
                from_.tag or "" if from_ else "",
                to.tag or "" if to else "",
                msg.call_id or "",
                str(cseq.number) if cseq else "",
                via.sent_by,
                *flow_words(source),
            )
        flag = f";{AUTH_FLAG}" if "authorization" in msg or "proxy-authorization" in msg else ""
        msg.prepend_via(
            f"SIP/2.0/{backend.transport.upper()} {inside.hostport()};branch={key}"
            f";{TOKEN_PARAM}={token}{flag}"
        )
        if msg.method == "REGISTER":
            msg.prepend_value(
                "path", f"<sip:{token}@{inside.hostport()};transport={inside.transport};lr>"
            )
        elif msg.method in DIALOG_CREATING and msg.to is not None and msg.to.tag is None:
            self._record_route(msg, inside, local, token)
        return [Send(backend, msg.to_bytes())]

    def _client_response(self, msg: Message) -> list[Action]:
        """A client's answer to a request the backend sent it through us."""
        via = msg.via
        assert via is not None
        if not (via.branch or "").startswith(BRANCH_PREFIX):
            return self._drop("response-not-ours")
        if not self._restore_route_set(msg, "record-route"):
            return self._drop("forged-route-seal")
        sealed = via.param(SEAL_PARAM)
        if sealed is None:
            msg.pop_via()
        else:  # our Via carries the Vias the phone never saw: put them back
            below = self.tokens.unseal(sealed)
            if below is None:
                return self._drop("forged-via-seal")
            msg.remove_header("via")
            for value in reversed(below):
                msg.prepend_via(value)
        if not msg.vias:
            return self._drop("response-without-via")
        return [Send(self.settings.backend, msg.to_bytes())]

    # ------------------------------------------------------------ from backend

    def from_backend(self, data: bytes, source: Peer, view: Peek | None = None) -> list[Action]:
        if view is not None and view.layout is not None and view.status is not None:
            fast = splice.backend_response(self, data, view)
            if fast is not None:
                self.fast_path += 1
                return fast
        try:
            msg = parse(data).validate()
        except SipError as exc:
            return self._drop(f"backend-malformed:{exc.reason}")
        if msg.is_request:
            return self._backend_request(msg, source)
        return self._backend_response(msg)

    def _backend_response(self, msg: Message) -> list[Action]:
        via = msg.via
        assert via is not None
        if not (via.branch or "").startswith(BRANCH_PREFIX):
            return self._drop("response-not-ours")
        flow = self.flow_of(via.param(TOKEN_PARAM))
        if flow is None:
            return self._drop("response-bad-token")
        msg.pop_via()
        self._neutralise(msg)
        self._hide_route_set(msg, flow, request=False)
        self._hide_contacts(msg, flow)
        return [Send(flow, msg.to_bytes())]

    def _backend_request(self, msg: Message, source: Peer) -> list[Action]:
        flow = self._pop_our_routes(msg)
        if flow is None:
            return self._drop("backend-request-without-route")
        forwards = self._max_forwards(msg)
        if forwards < 0:
            if msg.method == "ACK":
                return self._drop("too-many-hops")
            answer = make_response(msg, 483, reason_phrase(483), to_tag=_response_tag(msg))
            return [Send(source, answer.to_bytes())]
        msg.set_max_forwards(forwards)
        outside = self.settings.public.get((flow.transport, ":" in flow.host))
        if outside is None:
            return self._drop("no-listener-for-client")
        via = msg.via
        assert via is not None
        key = branch_of(via.branch or "", via.sent_by, msg.call_id or "", str(flow))
        # the Vias below ours (the PBX's, and those of whoever called through
        # it) are sealed into ours: the phone learns no address but the edge's
        below = self.tokens.seal(msg.get_all("via"))
        msg.remove_header("via")
        msg.prepend_via(
            f"SIP/2.0/{flow.transport.upper()} {outside.hostport()};branch={key};{SEAL_PARAM}={below}"
        )
        if msg.method in DIALOG_CREATING and msg.to is not None and msg.to.tag is None:
            inside = self.settings.internal[self.settings.backend.transport]
            self._record_route(msg, outside, inside, self.token_for(flow))
        self._neutralise(msg)
        self._hide_route_set(msg, flow, request=True)
        self._hide_contacts(msg, flow)
        return [Send(flow, msg.to_bytes())]
