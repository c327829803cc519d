#!/usr/bin/env bash
# The GPU checks of one short lent-GPU session, in order of value, each bounded in time (about
# 9 minutes in all on an H100): the packing benchmark (K = 1, 4, 8, 16, then with CUDA MPS),
# then the training core's throughput and MFU (deep & narrow 24 x 1024 and 80 x 1024, high_vram).
# Results are appended to docs/benchmarks.md and copied to $OUT when set (the device tool's
# output folder), so a session cut short still returns what it measured.
#
#     bash benchmarks/gpu_session.sh            # from the repository root, venv installed
set -u
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/arbiter-gpu-session}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout 300 "$PY" benchmarks/packing.py --steps 1500 --k 1 4 8 16 --mps 2>&1 | tee "$OUT/packing.txt"
cp docs/benchmarks.md "$OUT/" 2>/dev/null
timeout 240 "$PY" benchmarks/gpu_throughput.py --cases deep24,deep80,high --budget-s 200 \
    --profile "$OUT/profile.txt" 2>&1 | tee "$OUT/gpu_throughput.txt"
cp docs/benchmarks.md "$OUT/"
