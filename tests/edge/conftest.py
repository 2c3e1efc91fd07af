"""The fixtures of the namespace site (``site.py``), for every test here."""

from .site import daemon, site  # noqa: F401
