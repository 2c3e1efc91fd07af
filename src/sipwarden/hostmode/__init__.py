"""Host mode: protect a PBX on this machine in place, with no change to it.

The kernel queues the PBX's SIP packets (NFQUEUE, after sipwarden's bans,
feeds and lane); sipwarden gives each one the edge's verdict and reads the
PBX's answers. ``mode.py`` is the mode (``HostMode``), ``nfqueue.py`` the
netlink queue, ``packets.py`` the IP packets; the kernel's rules are
``enforce/queue.py``'s.
"""

from .mode import HostMode, settings_of
from .nfqueue import QueueError

__all__ = ["HostMode", "QueueError", "settings_of"]
