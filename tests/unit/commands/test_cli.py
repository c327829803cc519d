"""The command line: templates, validate and sweep --dry-run (the one-line errors with exit code
2 of every bad input: test_bad_input.py)."""

from __future__ import annotations

import subprocess
import sys

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.templates import list_templates, packaged_configs

GOOD_TEMPLATE = """
    [model]
    dim = 32
    n_layers = 1
    n_heads = 2
    [sweep.space]
    "training.weight_decay" = [0.1, 1.0]
    "model.n_layers" = [1, 2, 3]
"""


def test_templates_lists_every_template_with_its_trials(cli):
    code, out, _ = cli("templates")
    assert code == 0
    for path in list_templates():
        assert path.name in out
    row = next(line for line in out.splitlines() if "grokking_regime.toml" in line)
    assert row.split()[1] == "8"


def test_validate_every_shipped_config(cli):
    files = sorted(packaged_configs().rglob("*.toml"))
    assert len(files) >= 7
    code, out, err = cli("validate", *files)
    assert (code, err) == (0, "")
    assert out.count("ok  ") == len(files)
    assert "grokking_regime.toml  (template, 8 trials)" in out


def test_validate_reports_each_bad_file_and_fails(cli, write):
    good = write("good.toml", GOOD_TEMPLATE)
    bad = write("bad.toml", "[training]\nprecision = 'bf17'\n")
    code, out, err = cli("validate", good, bad)
    assert code == ExitCode.USAGE
    assert "ok  " in out and "(template, 6 trials)" in out
    assert err.strip() == (
        f"arbiter: error: {bad}: training.precision: "
        "Input should be 'auto', 'bf16', 'fp16' or 'fp32' (got 'bf17')"
    )


def test_dry_run_prints_one_row_per_trial(cli, write, tmp_path):
    template = write("t.toml", GOOD_TEMPLATE)
    storage = tmp_path / "storage"
    code, out, err = cli(
        "sweep", "--template", template, "--gpus", "4", "--dry-run", "--storage", storage
    )
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == [str(i) for i in range(6)]
    assert {(row[1], row[2]) for row in rows} == {(wd, n) for wd in ("0.1", "1.0") for n in "123"}
    assert "6 trials" in out and "4 at a time" in out
    assert not storage.exists()  # a dry run writes nothing


def test_dry_run_of_the_grokking_template_by_name(cli):
    code, out, _ = cli("sweep", "--template", "grokking_regime.toml", "--gpus", "4", "--dry-run")
    assert code == 0
    assert "8 trials" in out and "x^2+y^2" in out


def test_dry_run_of_an_equal_budget_sweep_shows_each_trials_size_and_distance(cli):
    code, out, err = cli("sweep", "--template", "deep_narrow_template.toml", "--dry-run")
    assert code == 0, err
    assert "sized to a budget of 1.03G parameters: model.dim derived (within 5%)" in out
    header = next(line.split() for line in out.splitlines() if line.strip().startswith("#"))
    assert header[:6] == ["#", "model.n_layers", "model.dim", "model.n_heads", "params", "vs"]
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(row[1], row[2], row[3]) for row in rows][-1] == ("80", "1024", "16")
    for row in rows:
        assert abs(float(row[5].rstrip("%"))) <= 5.0  # "+3.2%": the distance from the budget


def test_python_dash_m_and_no_ray_import_for_validate(write):
    template = write("t.toml", GOOD_TEMPLATE)
    code = (
        "import sys; from arbiter.cli import main; "
        f"rc = main(['validate', {str(template)!r}]); "
        "assert 'ray' not in sys.modules and 'torch' not in sys.modules, 'heavy import'; "
        "sys.exit(rc)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    module = subprocess.run(
        [sys.executable, "-m", "arbiter", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0 and module.stdout.startswith("arbiter ")


def test_train_runs_without_importing_ray_or_matplotlib(write, tmp_path):
    """`arbiter train` is the single-run flow: it must start fast, without the sweep stack."""
    config = write(
        "run.toml",
        "[model]\ndim = 32\nn_layers = 1\nn_heads = 2\n"
        "[training]\nsteps = 5\nwarmup_steps = 0\nbatch_size = 16\n",
    )
    code = (
        "import sys; from arbiter.cli import main; "
        f"rc = main(['train', '--config', {str(config)!r}, '--out', {str(tmp_path / 'out')!r}]); "
        "assert rc == 0, rc; "
        "assert 'ray' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "metrics.jsonl").is_file()
