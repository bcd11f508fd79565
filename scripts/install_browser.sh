#!/usr/bin/env bash
# Install Debian's Chromium for the demo's browser test (tests/test_demo_browser.py), unless
# a chromium is already on PATH. Playwright drives this system browser: no browser download.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
