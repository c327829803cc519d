"""The command line: templates, validate, sweep --dry-run, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arbiter.cli import EXIT_USER_ERROR
from arbiter.templates import list_templates, packaged_configs

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
    assert code == EXIT_USER_ERROR
    assert "ok  " in out and "(template, 6 trials)" in out
    assert err.strip() == (
        f"arbiter: error: {bad}: training.precision: "
        "Input should be 'auto', 'bf16', 'fp16' or 'fp32' (got 'bf17')"
    )


def test_dry_run_prints_one_row_per_trial(cli, write, tmp_path):
    template = write("t.toml", GOOD_TEMPLATE)
    storage = tmp_path / "storage"
    code, out, err = cli("sweep", "--template", template, "--gpus", "4", "--dry-run",
                         "--storage", storage)  # fmt: skip
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


def _error_cases():
    """(id, files to write, argv) — each must exit 2 with one line naming what is wrong."""
    t = "t.toml"
    return [
        ("bad-toml", {t: "[model\n"}, ["validate", t], "invalid TOML"),
        ("unknown-section", {t: "[optim]\nlr = 1\n"}, ["validate", t], "optim: unknown key"),
        ("unknown-key", {t: "[model]\nwidth = 3\n"}, ["validate", t], "model.width: unknown key"),
        ("wrong-type", {t: "[training]\nsteps = 'many'\n"}, ["validate", t], "training.steps"),
        ("out-of-range", {t: "[data]\ntrain_fraction = 1.5\n"}, ["validate", t],
         "data.train_fraction"),
        ("bad-literal", {t: "[model]\nmlp = 'relu'\n"}, ["validate", t], "'swiglu' or 'gelu'"),
        ("heads", {t: "[model]\ndim = 100\nn_heads = 3\n"}, ["validate", t], "model.n_heads"),
        ("not-prime", {t: "[data]\noperation = 'div'\nmodulus = 100\n"}, ["validate", t],
         "data.modulus: 100 is not prime"),
        ("missing-extends", {t: 'extends = "base.toml"\n'}, ["validate", t], "extends"),
        ("cyclic-extends", {t: 'extends = "u.toml"\n', "u.toml": 'extends = "t.toml"\n'},
         ["validate", t], "cycle"),
        ("missing-file", {}, ["validate", "absent.toml"], "absent.toml: file not found"),
        ("directory", {"d/x.toml": ""}, ["validate", "d"], "is a directory"),
        ("bad-distribution", {t: '[sweep.space]\n"training.seed" = { gauss = [1, 2] }\n'},
         ["validate", t], "unknown distribution"),
        ("bad-swept-key", {t: '[sweep.space]\n"training.lr" = [1, 2]\n'}, ["validate", t],
         "not a config key"),
        ("invalid-grid-point", {t: '[model]\ndim = 96\n[sweep.space]\n"model.n_heads" = [2, 5]\n'},
         ["validate", t], "trial 1 (model.n_heads=5)"),
        ("unknown-template", {}, ["sweep", "--template", "nope.toml", "--dry-run"],
         "unknown template"),
        ("run-config-as-template", {t: "[model]\ndim = 64\n"},
         ["sweep", "--template", t, "--dry-run"], "has no [sweep] table"),
        ("bad-set", {t: GOOD_TEMPLATE}, ["sweep", "--template", t, "--set", "steps", "--dry-run"],
         "expected KEY=VALUE"),
        ("bad-set-value", {t: GOOD_TEMPLATE},
         ["sweep", "--template", t, "--set", "training.steps=-1", "--dry-run"],
         "--set: training.steps"),
        ("negative-gpus", {t: GOOD_TEMPLATE}, ["sweep", "--template", t, "--gpus", "-1"],
         "must be 0 or more"),
        ("gpus-not-a-number", {t: GOOD_TEMPLATE}, ["sweep", "--template", t, "--gpus", "four"],
         "expected a whole number"),
        ("storage-is-a-file", {t: GOOD_TEMPLATE, "file": "x"},
         ["sweep", "--template", t, "--storage", "file", "--dry-run"], "is a file"),
        ("unknown-flag", {}, ["templates", "--colour"], "unrecognized arguments"),
        ("unknown-tier", {}, ["train", "--tier", "mid_vram"], "invalid choice"),
        ("config-and-tier", {t: ""}, ["train", "--config", t, "--tier", "low_vram"],
         "not allowed with"),
    ]  # fmt: skip


@pytest.mark.parametrize(("files", "argv", "words"), [c[1:] for c in _error_cases()],
                         ids=[c[0] for c in _error_cases()])  # fmt: skip
def test_user_errors_are_one_line_with_exit_code_2(cli, tmp_path, monkeypatch, files, argv, words):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = cli(*argv)
    assert code == EXIT_USER_ERROR
    assert len(err.strip().splitlines()) == 1, err
    assert words in err
    assert "Traceback" not in err + out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


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
    module = subprocess.run([sys.executable, "-m", "arbiter", "--version"], capture_output=True,
                            text=True)  # fmt: skip
    assert module.returncode == 0 and module.stdout.startswith("arbiter ")
