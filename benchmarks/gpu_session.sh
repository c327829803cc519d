#!/usr/bin/env bash
# The GPU checks of one short lent-GPU session, in order of value, each bounded in time (about
# 9 minutes in all on an H100): the packing benchmark (K = 1, 4, 8, 16, then with CUDA MPS),
# then the training core's throughput and MFU (deep & narrow 24 x 1024 and 80 x 1024, high_vram);
# or, named alone, the four-arm Grokfast reproduction (9 minutes at most, then tabulated as far
# as it got).
# Results are appended to docs/benchmarks.md and copied to $OUT when set (the device tool's
# output folder), so a session cut short still returns what it measured.
#
# On a machine with no package index (the lent GPUs), Arbiter comes as the wheels in .whl/ that
# deploy/offline/wheels.py made beforehand (docs/benchmarks.md), installed first into the
# Python that has torch; elsewhere, the repository's venv.
#
#     bash benchmarks/gpu_session.sh            # from the repository root
#     bash benchmarks/gpu_session.sh grokfast   # the parts named: packing, throughput, grokfast
set -u -o pipefail
OUT=${OUT:-/tmp/arbiter-gpu-session}
mkdir -p "$OUT"
if [ -d .whl ]; then
    PY=${PY:-python3}
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile .whl/*.whl 2>&1 |
        tee "$OUT/install.txt" || exit 1
else
    PY=${PY:-.venv/bin/python}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
parts=${*:-packing throughput}
for part in $parts; do
    case $part in
    packing)
        timeout 300 "$PY" benchmarks/packing.py --steps 1500 --k 1 4 8 16 --mps 2>&1 |
            tee "$OUT/packing.txt"
        ;;
    throughput)
        timeout 240 "$PY" benchmarks/gpu_throughput.py --cases deep24,deep80,high --budget-s 200 \
            --profile "$OUT/profile.txt" 2>&1 | tee "$OUT/gpu_throughput.txt"
        ;;
    grokfast)
        # stopped at its limit, the sweep ends resumably and is tabulated as far as it got (in
        # grokfast.txt only: unfinished arms count as not reached)
        storage=/tmp/arbiter-reproductions
        timeout "${GROKFAST_S:-480}" "$PY" benchmarks/reproduce.py grokfast --gpus 1 \
            --trials-per-gpu 4 --storage "$storage" 2>&1 | tee "$OUT/grokfast.txt"
        status=$?
        if [ $status -eq 124 ] || [ $status -eq 130 ]; then
            "$PY" benchmarks/reproduce.py grokfast --no-write \
                --experiment "$(ls -d "$storage"/repro-*)" \
                2>&1 | tee -a "$OUT/grokfast.txt"
        fi
        cp docs/reproductions.md docs/reproductions/grokfast.png "$OUT/" 2>/dev/null
        ;;
    *)
        echo "gpu_session.sh: unknown part $part (packing, throughput, grokfast)" >&2
        exit 2
        ;;
    esac
    cp docs/benchmarks.md "$OUT/"
done
