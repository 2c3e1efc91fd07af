#!/usr/bin/env bash
# Install sipwarden into .venv and run its main job with embedded defaults.
# Extra arguments go to the sipwarden command instead of the default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
    # the demo: the edge with embedded defaults on loopback, attacked while a
    # phone registers (`bash scripts/run.sh run` runs the daemon itself)
    set -- demo
fi
exec .venv/bin/sipwarden "$@"
