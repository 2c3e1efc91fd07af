"""asyncio transports around the sans-I/O proxy: see ``server``."""

from .server import Edge

__all__ = ["Edge"]
