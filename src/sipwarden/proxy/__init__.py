"""Sans-I/O stateless proxying (RFC 3261 §16.11): see ``core``."""

from .base import Action, Drop, Local, ProxySettings, Send
from .core import StatelessProxy
from .tokens import FlowTokens

__all__ = [
    "Action",
    "Drop",
    "FlowTokens",
    "Local",
    "ProxySettings",
    "Send",
    "StatelessProxy",
]
