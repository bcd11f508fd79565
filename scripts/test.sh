#!/usr/bin/env bash
# Install what the tests need (the package, its test extras, Debian's chromium for the
# browser test), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_browser.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 REGIONVLM_REQUIRE_BROWSER=1
python3 -m pytest "$@"
