#!/usr/bin/env bash
# The quick start: install, make the synthetic data, train the tiny model (and its
# no-points ablation) on 2 CPU processes, evaluate, print the numbers (~10 min on 2 cores).
# Arguments go to `python -m lavis_regionvlm.quickstart` (e.g. --epochs 4 --no-ablation, --num-images 2500 --epochs 10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -m lavis_regionvlm.quickstart "$@"
