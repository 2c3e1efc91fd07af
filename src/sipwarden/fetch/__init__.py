"""What sipwarden fetches from outside, for the pure core to use: threat
lists over HTTP (APIBAN, list feeds), country databases from disk, the
addresses of host names (trusted peers) from DNS.

These are the resources the pure ``intel`` and ``policy`` packages must not
touch themselves: each adapter here does the I/O and hands the core plain
values (bytes, texts, address lists) or the core's own objects built from
them. The daemon calls them off the packets' thread.
"""
