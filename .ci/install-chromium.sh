#!/bin/sh
# Headless Chromium for the report's browser test (tests/report/). Debian's package; installed
# only when missing, so `make setup` stays a no-op on a machine that has it.
set -eu
CHROMIUM="${QDANALYSIS_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: $CHROMIUM is missing and apt-get is not available; install Chromium" \
        "and set QDANALYSIS_CHROMIUM to its path (the browser test is skipped without it)." >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
