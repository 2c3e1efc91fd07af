"""Deception, sans-I/O (issue 16, begun): what to answer a source already
known to be hostile, instead of silence. Silence stays the default: every
answer tells a scanner that a SIP server lives here. Nothing here sends: it
returns the bytes and actions, and the edge sends them within the
reflection budget (``policy.reflection``)."""
