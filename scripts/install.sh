#!/usr/bin/env bash
# Install lavis_regionvlm and everything it needs into the current Python (3.11).
# torch/torchvision are pinned to the versions this project is tested with; LAVIS
# 1.0.2's working pins (transformers 4.26, numpy<2, ...) come from setup.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python3 -m pip install -q -e ".[test]"
