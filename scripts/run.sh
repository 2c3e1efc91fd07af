#!/usr/bin/env bash
# Install sipwarden into .venv and run its main job with embedded defaults.
# Extra arguments go to the sipwarden command instead of the default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
    # The edge (`sipwarden run`, loopback, SQLite) is not built yet; until it is,
    # show what the command can do.
    set -- --help
fi
exec .venv/bin/sipwarden "$@"
