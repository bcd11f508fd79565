#!/usr/bin/env bash
# The benchmark suite at full size (EVA ViT-g at 364 px, BERT-base Q-Former, FlanT5-XL; random
# weights, nothing downloaded) on one CUDA GPU: one prepared command, a few minutes on an
# A100/H100 (about 4.0 B parameters; needs about 40 GB of GPU memory with the training step).
#
#   bash benchmarks/gpu.sh [OUTPUT_DIR]          # default: $OUT if set, else ./bench_gpu
#   bash benchmarks/gpu.sh --dry-run             # anywhere: the plan, the full-size model on the
#                                                # meta device and its FLOP counts; measures nothing
#
# Writes OUTPUT_DIR/bench_gpu.json (every figure) and OUTPUT_DIR/bench_gpu.txt (the table).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--dry-run" ]]; then
    exec python benchmarks/run.py --device cuda --full-size --dry-run
fi
out="${1:-${OUT:-bench_gpu}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
python benchmarks/run.py --device cuda --full-size --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
