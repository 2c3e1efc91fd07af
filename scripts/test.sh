#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it: lint, types, tests.
# CI runs exactly this (see .ci/run); with CI=true no test may skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages used by the real-tool tests. Later issues add to this list.
APT_PACKAGES=(sip-tester kamailio kamailio-tls-modules baresip openssl nmap sipsak tcpdump iproute2 nftables conntrack systemd-journal-remote iptables patch chromium chromium-driver tmux redis-server)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "not root: cannot install ${missing[*]}; tests that need them will skip" >&2
    fi
fi

bash scripts/setup.sh test
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports  # the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml)
# the package as a user gets it, built once (sdist, wheel) and installed in a fresh
# venv for every test worker (tests/package/): readable by the user the capability tests run as
pkg_home="$(mktemp -d /tmp/sipwarden-pkg.XXXXXX)"
trap 'rm -rf "$pkg_home"' EXIT
.venv/bin/python -m tests.package.install "$pkg_home"
SIPWARDEN_TEST_INSTALL="$pkg_home" .venv/bin/python -m pytest -n auto --dist loadgroup "$@"
# the pure core's unit and property tests once more on the pure-Python twins alone
# (issue 21): the C speedups off, as on a machine without a compiler. The twin tests
# (C against Python, byte for byte) need both paths: they ran above. Only with no
# arguments: a chosen subset runs once.
if [ "$#" -eq 0 ]; then
    SIPWARDEN_PURE_PYTHON=1 .venv/bin/python -m pytest -n auto -p no:cacheprovider \
        tests/sip tests/proxy tests/policy tests/observe tests/intel tests/deception \
        --ignore tests/sip/test_speedups.py --ignore tests/proxy/test_splice.py
fi
