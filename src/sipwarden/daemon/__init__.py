"""The running daemon, between the modes and the faces.

- ``core``: ``Daemon``, one worker's policy, keepers, modes and control
  socket; reload, status, asking the other workers;
- ``modes``: the ``Mode`` interface the edge (and next host mode, logwatch,
  the fleet) implements;
- ``commands``: the one table of named commands the control socket, the
  CLI (through it) and REST all run;
- ``bans``: the ban keeper (the ban book's I/O: store and kernel), the
  kernel's reconciliation at start;
- ``intel``: the feed keeper (loading, fetching, the kernel's feed sets,
  the country database's reopening);
- ``offline``, ``intel_commands``: what the CLI does when no daemon runs
  (or, for ``intel sync``, beside it);
- ``control``: the Unix socket itself; ``stats``: status and its sum;
- ``preflight``: the start-up checks of the files and addresses the config
  names (one line each, naming the key).
"""
