#!/usr/bin/env bash
# Create .venv and install sipwarden into it (with extras given as $1, e.g. "test").
# Works on a fresh Debian 12 as root (installs python3-venv if it is missing)
# and on a developer machine with any Python >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "sipwarden needs Python 3.11 or newer (python3 is $(python3 --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev
            python3 -m venv .venv
        else
            echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
# The C hot path (src/sipwarden/sip/_speedups.c) needs a compiler and Python's
# headers; without them sipwarden still installs and runs, only slower.
has_headers() { python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; }
if ! command -v cc >/dev/null || ! has_headers; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev
    else
        echo "no C compiler or Python headers: installing without the C speedups" >&2
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
# Always editable: run.sh and test.sh share .venv, and the checkout is the code.
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
