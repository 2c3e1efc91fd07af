"""The built-in registrar/UAS used by fast tests and the demo (see ``core``)."""

from .core import Answer, Binding, Registrar, reply_flow
from .server import RegistrarServer

__all__ = ["Answer", "Binding", "Registrar", "RegistrarServer", "reply_flow"]
