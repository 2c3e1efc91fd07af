#!/usr/bin/env bash
# Install sipwarden into .venv and run its main job with embedded defaults.
# Extra arguments go to the sipwarden command instead of the default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
    # the edge with embedded defaults: UDP and TCP on 127.0.0.1:5060, PBX at 127.0.0.1:5080
    set -- run
fi
exec .venv/bin/sipwarden "$@"
