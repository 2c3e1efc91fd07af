"""Sans-I/O stateless proxying (RFC 3261 §16.11): see ``core``."""

from .core import Action, Drop, Local, ProxySettings, Send, StatelessProxy
from .flow import Flow, FlowTokens

__all__ = [
    "Action",
    "Drop",
    "Flow",
    "FlowTokens",
    "Local",
    "ProxySettings",
    "Send",
    "StatelessProxy",
]
