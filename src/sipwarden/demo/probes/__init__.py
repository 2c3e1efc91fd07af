"""Real scanner probes that ``sipwarden demo`` replays (see README.txt)."""
