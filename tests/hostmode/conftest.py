"""The fixtures of the host-mode site (``site.py``), for every test here."""

from .site import site  # noqa: F401
