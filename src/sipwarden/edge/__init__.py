"""asyncio transports around the sans-I/O proxy: see ``server``."""

from .key import flow_key
from .server import Edge, local_address_towards

__all__ = ["Edge", "flow_key", "local_address_towards"]
