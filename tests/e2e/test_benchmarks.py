"""The benchmarks still run: each is started with `--smoke-test` the way a user would start it.

Only that it runs and prints sane rows is checked; timings are never asserted, since they depend
on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys

import pytest
from helpers import ROOT, table_rows


def run_smoke_test(script: str) -> str:
    """Run `benchmarks/SCRIPT --smoke-test`; check it left docs/benchmarks.md alone."""
    report = ROOT / "docs" / "benchmarks.md"
    before = report.read_text() if report.exists() else None
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--smoke-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (report.read_text() if report.exists() else None) == before
    return done.stdout


@pytest.mark.slow
def test_core_overhead_smoke_test_prints_both_loops() -> None:
    rows = table_rows(run_smoke_test("core_overhead.py"))
    loops = [row[1] for row in rows]
    assert "plain" in loops
    assert any(loop.startswith("core") for loop in loops)
    for row in rows:
        seconds_per_step = float(row[3])  # the s/step column
        assert seconds_per_step > 0, row


@pytest.mark.slow
def test_grokfast_smoke_test_runs_both_ways() -> None:
    # 100 steps: too few to fit or grok, so every measure reads as beyond the budget
    rows = table_rows(run_smoke_test("grokfast.py"))
    assert rows == [["1.0", "0", "> 100", "> 100", "> 100", "> 100", "-"]]


def number(cell: str) -> float:
    """A table cell as a number: '1,234.5' -> 1234.5; '6.0 + 512.0' (estimate + floor) -> 6.0."""
    return float(cell.split(" + ")[0].replace(",", ""))


@pytest.mark.slow
def test_memory_smoke_test_measures_less_activation_memory_with_checkpointing() -> None:
    rows = table_rows(run_smoke_test("memory.py"))
    memory = [row for row in rows if len(row) == 10]  # the memory table
    speed = [row for row in rows if len(row) == 7]  # the time and RSS table
    assert [row[1] for row in memory] == ["off", "on"]
    assert [row[1] for row in speed] == ["off", "on"]
    for row in memory:
        assert all(number(cell) > 0 for cell in row[2:]), row  # MiB and ratios
    off, on = memory
    assert number(on[2]) < number(off[2])  # saved activations, peak
    assert number(on[3]) < number(off[3])  # of which blocks
    assert number(on[6]) == number(off[6])  # params + grads + AdamW do not change
    for row in speed:
        assert number(row[2]) > 0 and number(row[5]) > 0, row  # s/step, peak RSS growth


@pytest.mark.slow
def test_startup_smoke_test_times_sweep_and_resume_to_their_first_step() -> None:
    rows = table_rows(run_smoke_test("startup.py"))
    assert [row[0] for row in rows] == ["`arbiter sweep`", "`arbiter resume`"]
    for row in rows:
        phases = [number(cell) for cell in row[1:5] if cell != "-"]
        total = number(row[5])
        assert total > 0 and all(phase >= 0 for phase in phases), row
        assert sum(phases) == pytest.approx(total, abs=0.05)  # one round: the phases add up
    sweep_step, resume_step = (int(row[7].split()[-1]) for row in rows)
    assert sweep_step == 1 and resume_step > 1  # resumed after a checkpoint, not from scratch


@pytest.mark.slow
def test_storage_smoke_test_runs_the_sweep_locally_and_in_s3_with_the_same_checkpoints() -> None:
    local, s3 = table_rows(run_smoke_test("storage.py"))
    assert local[0] == "local folder" and s3[0].startswith("s3://")
    assert all(number(row[1]) > 0 for row in (local, s3))
    # the same checkpoints, byte for byte as many, whether on disk or in the bucket
    assert number(local[2]) == number(s3[2]) > 0
    assert number(local[3]) == number(s3[3]) > 12 * 62_016  # fp32 weights and two moments
    assert number(s3[4].rstrip("x")) == pytest.approx(number(s3[1]) / number(local[1]), abs=0.01)


@pytest.mark.slow
def test_checkpoint_cost_smoke_test_sets_a_write_against_the_steps_between_two() -> None:
    (row,) = table_rows(run_smoke_test("checkpoint_cost.py"))
    name, params, size, write, digest, interval, step, overhead, break_even = row
    assert name == "quickstart" and number(params) == 62_016  # the quickstart's 1 x 64 model
    # fp32 weights and two AdamW moments: 12 bytes per parameter, plus the zip's structure
    assert 12 * 62_016 / 2**20 < number(size.split()[0]) < 1.0
    assert 0 <= number(digest) < number(write) and number(interval) == 1000
    assert step.endswith("(CPU)") and number(step.split()[0]) > 0
    expected = number(write) / (1000 * number(step.split()[0]))
    assert number(overhead.rstrip("%")) / 100 == pytest.approx(expected, abs=5e-5)
    assert number(break_even) == pytest.approx(number(write) / 10, abs=1e-4)


@pytest.mark.slow
def test_gpu_throughput_smoke_test_measures_a_tiny_model_on_the_cpu() -> None:
    # The same code path as on a GPU (the core's own tokens/s and peak memory); no MFU on a CPU.
    rows = table_rows(run_smoke_test("gpu_throughput.py"))
    measured = [row for row in rows if row[1] == "sdpa"]
    assert len(measured) == 1 and number(measured[0][4]) > 0, rows
    assert measured[0][5] == "-"  # no MFU without a GPU's known peak
    flash = [row for row in rows if row[1] == "flash"]
    assert flash and all(row[4] or "not installed" in row[-1] for row in flash), rows


CHILD = """
import signal, sys, time
def stop(signum, frame):
    print("child got", signal.Signals(signum).name, flush=True)
    time.sleep(0.5)  # a clean stop takes a while: the parent must wait, not kill
    print("child stopped cleanly", flush=True)
    sys.exit(7)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
"""

PARENT = """
import sys
sys.path.insert(0, "benchmarks")
from interrupts import run_through_interrupts
sys.exit(run_through_interrupts([sys.executable, "-c", sys.argv[1]]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_benchmarks_arbiter_command_is_stopped_by_sigint_and_waited_for(sig) -> None:
    """What `reproduce.py` and the sweep benchmarks run their `arbiter` commands through: a
    Ctrl-C, a closed terminal or a `kill` of the script reaches the command as one SIGINT."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout.readline() == "ready\n"
    parent.send_signal(sig)
    output, _ = parent.communicate(timeout=30)
    assert output == "child got SIGINT\nchild stopped cleanly\n"
    assert parent.returncode == 7  # the command's own exit code


@pytest.mark.parametrize("seeding", ["prieto", "arbiter"])
def test_prieto_reference_smoke_test_trains_their_network_either_way(seeding) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/prieto_reference.py", "--smoke-test", "--seeding", seeding],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ((label, accuracy),) = table_rows(done.stdout)
    assert label == "validation accuracy" and 0 <= float(accuracy) < 0.05  # it has not grokked
    assert "step 50: validation accuracy" in done.stderr


@pytest.mark.slow
def test_packing_smoke_test_runs_the_sweep_at_each_k_on_a_logical_gpu() -> None:
    rows = table_rows(run_smoke_test("packing.py"))
    assert [(row[0], row[1]) for row in rows] == [("plain", "1"), ("plain", "4")]
    assert all(number(row[2]) > 0 and number(row[3]) > 0 for row in rows)
    assert rows[0][4] == "1.00x"
    for row in rows:  # trials/hour against K = 1's, as printed
        ratio = number(row[3]) / number(rows[0][3])
        assert number(row[4].rstrip("x")) == pytest.approx(ratio, abs=0.01)


@pytest.mark.slow
def test_deep_narrow_smoke_test_sizes_each_depth_to_the_budget_and_trains() -> None:
    study = ROOT / "docs" / "deep_narrow.md"
    before = study.read_text()
    rows = table_rows(run_smoke_test("deep_narrow.py"))
    assert study.read_text() == before  # a smoke test writes nothing
    assert [(row[0], row[1]) for row in rows] == [("0.2M", "1"), ("0.2M", "2")]
    widths = [int(row[2].split()[0]) for row in rows]
    assert widths[0] > widths[1]  # at one budget the deeper model is the narrower
    for _, _, _, params, loss, _, seeds, epochs in rows:
        assert abs(number(params.rstrip("M")) * 1e6 / 2e5 - 1) <= 0.1
        assert 0 < number(loss) < math.log(512) + 1  # near chance after 30 steps, finite
        assert seeds == "1" and number(epochs) > 0


@pytest.mark.slow
def test_prepare_text_smoke_test_tokenizes_each_size_as_bytes_and_bpe() -> None:
    rows = table_rows(run_smoke_test("prepare_text.py"))
    assert [(row[0], row[1]) for row in rows] == [
        ("1", "bytes"),
        ("1", "bpe"),
        ("2", "bytes"),
        ("2", "bpe"),
    ]
    for mb, kind, vocab, count, per_token, seconds, rate, peak in rows:
        if kind == "bytes":  # one token per byte of the corpus
            assert number(count) == int(mb) * 2**20 and number(per_token) == 1.0
        else:
            assert number(per_token) > 1.5 and number(vocab) == 512
        assert number(seconds) > 0 and number(peak) > 0
        # the seconds are printed to 0.1: the rate's own seconds round to them
        assert abs(number(count) / number(rate) - number(seconds)) <= 0.05 + 1e-6


@pytest.mark.slow
def test_grokfast_reference_smoke_test_runs_their_loop_beside_arbiter() -> None:
    rows = table_rows(run_smoke_test("grokfast_reference.py"))
    assert [row[0] for row in rows] == ["baseline", "grokfast + weight decay"]
    for _, reference, ours, verdict, at_30 in rows:
        assert reference == ours == "not by 30" and verdict == "agree: neither by the budget"
        theirs, arbiter = (float(a) for a in at_30.split(" / "))
        assert 0 <= theirs < 0.2 and 0 <= arbiter < 0.2  # 30 steps: near chance (1/97)
