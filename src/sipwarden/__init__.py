"""sipwarden: a SIP security edge in front of a PBX."""

__version__ = "0.1.0"
