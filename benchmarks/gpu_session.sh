#!/usr/bin/env bash
# The GPU checks of one short lent-GPU session, in order of value, each bounded in time (about
# 9 minutes in all on an H100, the install included): the packing benchmark (K = 1, 4, 8, 16,
# then with CUDA MPS), then the training core's throughput and MFU (deep & narrow 24 x 1024 and
# 80 x 1024, high_vram); or, named alone, the four-arm Grokfast reproduction (under 8 minutes,
# then tabulated as far as it got).
# Results are appended to docs/benchmarks.md and copied to $OUT when set (the device tool's
# output folder), so a session cut short still returns what it measured. The exit status is the
# last failing part's (0 when every part ran to its end).
#
# Where the repository has no venv (the lent GPUs: torch, no Ray, no package index), Arbiter comes
# as the wheels in .whl/ that deploy/offline/wheels.py made beforehand (docs/benchmarks.md),
# installed first into the Python that has torch.
#
#     bash benchmarks/gpu_session.sh            # from the repository root
#     bash benchmarks/gpu_session.sh grokfast   # the parts named: packing, throughput, grokfast
set -u -o pipefail
OUT=${OUT:-/tmp/arbiter-gpu-session}
mkdir -p "$OUT"
parts=${*:-packing throughput}
for part in $parts; do
    case $part in
    packing | throughput | grokfast) ;;
    *)
        echo "gpu_session.sh: unknown part $part (packing, throughput, grokfast)" >&2
        exit 2
        ;;
    esac
done
if [ -x .venv/bin/python ]; then
    PY=${PY:-.venv/bin/python}
else
    PY=${PY:-python3}
    # pip refuses, before installing anything, a version of the image's that a wheel does not
    # accept and that no carried wheel (--upgrade) can replace
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --find-links .whl \
        -r .whl/requirements.txt 2>&1 | tee "$OUT/install.txt" || exit 1
fi
"$PY" -c "import torch, ray, arbiter.tune.tuner" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
rc=0
for part in $parts; do
    case $part in
    packing)
        timeout -k 30 300 "$PY" benchmarks/packing.py --steps 1500 --k 1 4 8 16 --mps 2>&1 |
            tee "$OUT/packing.txt" || rc=$?
        ;;
    throughput)
        timeout -k 30 240 "$PY" benchmarks/gpu_throughput.py --cases deep24,deep80,high \
            --budget-s 200 --profile "$OUT/profile.txt" 2>&1 | tee "$OUT/gpu_throughput.txt" ||
            rc=$?
        ;;
    grokfast)
        # Stopped at its limit (timeout's 124, or 137 when the stop itself hung), the sweep
        # ends resumably and is tabulated as far as it got, in grokfast.txt only: unfinished
        # arms count as not reached. 130 is the script's own exit code for an interruption.
        storage=$(mktemp -d /tmp/arbiter-reproductions.XXXX)
        timeout -k 60 "${GROKFAST_S:-400}" "$PY" benchmarks/reproduce.py grokfast --gpus 1 \
            --trials-per-gpu 4 --storage "$storage" 2>&1 | tee "$OUT/grokfast.txt"
        status=$?
        case $status in
        0 | 1) cp docs/reproductions.md docs/reproductions/grokfast.png "$OUT/" ;;
        124 | 130 | 137)
            for experiment in "$storage"/repro-*; do
                "$PY" benchmarks/reproduce.py grokfast --no-write --experiment "$experiment" \
                    2>&1 | tee -a "$OUT/grokfast.txt"
            done
            rc=$status
            ;;
        *) rc=$status ;;
        esac
        ;;
    esac
    cp docs/benchmarks.md "$OUT/"
done
exit $rc
