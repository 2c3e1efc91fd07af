"""The running daemon: the keepers that carry the core's decisions out to
the store and the kernel (bans, feeds), the control socket, and the table
of named commands that the CLI, the control socket and REST all call."""
