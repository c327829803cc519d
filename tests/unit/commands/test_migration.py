"""The legacy orchestrator's flags on `arbiter sweep`: `--base-config FILE` and `--strategy S`.

`--base-config B --template T` layers B under T itself (T's own keys win over B's, B's over what T
inherits through `extends`); `--base-config B` alone uses B as the template; `--strategy S` is
`--set sweep.strategy=S`. Each legacy flag adds one `note:` line on stderr naming the new form;
every mistake stays one line with exit code 2 (see docs/migration.md).
"""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, run, status, tiny_run

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.loading import load_config
from arbiter.config.templates import packaged_configs
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, read_record, template_hash
from arbiter.experiments.storage import new_experiment

SEED_BASE = "configs/sweep_templates/base_config.toml"
# A CPU-sized run: the base config of the legacy sweep.
BASE = tiny_run(150)
# Random with one sample draws one trial; `--strategy grid` turns it into the 2-point grid.
TEMPLATE = """
    [sweep]
    metric = "val/accuracy"
    strategy = "random"
    [sweep.space]
    "training.weight_decay" = [0.1, 1.0]
"""
BASE_NOTE = (
    'note: --base-config is the legacy form; templates now say extends = "base.toml" '
    "(see docs/migration.md)"
)
STRATEGY_NOTE = (
    'note: --strategy is the legacy form; templates now say strategy = "grid" in [sweep], '
    "or --set sweep.strategy=grid (see docs/migration.md)"
)


def rows(out: str) -> list[list[str]]:
    """The trial rows of a dry run's table."""
    return [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("arbiter: error: ", "arbiter sweep: error: ")), err
    return lines[0]


def test_the_template_wins_over_the_base_config_which_wins_over_extends(write):
    write("parent.toml", "[logging]\nlog_interval = 7\n[training]\nseed = 3\n")
    base = write("mine.toml", "[logging]\nlog_interval = 10\n[training]\nsteps = 500\n")
    template = write("t.toml", 'extends = "parent.toml"\n[training]\nsteps = 900\n[sweep.space]\n')
    config = load_config(template, base=base)
    assert config.training.steps == 900  # the template's own key
    assert config.logging.log_interval == 10  # the base config over the inherited file
    assert config.training.seed == 3  # inherited, not set by the base config
    assert load_config(template).logging.log_interval == 7  # without it: as before


def test_an_error_inside_the_base_config_names_the_base_config(write, cli):
    base = write("base.toml", "[training]\nsteps = -1\n")
    template = write("t.toml", TEMPLATE)
    code, _, err = cli("sweep", "--base-config", base, "--template", template, "--dry-run")
    assert code == ExitCode.USAGE
    assert one_error_line(err).startswith(f"arbiter: error: {base}: training.steps: ")


def test_dry_run_with_base_config_and_template(write, cli, tmp_path):
    base = write("base.toml", BASE)
    template = write("t.toml", TEMPLATE)
    storage = tmp_path / "storage"
    code, out, err = cli(
        "sweep",
        "--base-config",
        base,
        "--template",
        template,
        "--strategy",
        "grid",
        "--dry-run",
        "--storage",
        storage,
    )
    assert code == 0, err
    assert err.splitlines() == [BASE_NOTE, STRATEGY_NOTE]
    assert [r[1] for r in rows(out)] == ["0.1", "1.0"]
    assert f"{template}: 2 trials, strategy grid" in out
    assert not storage.exists()
    # the base config's 32-wide model, not the default 128-wide one
    _, alone, _ = cli("sweep", "--template", template, "--strategy", "grid", "--dry-run")
    assert rows(out)[0][2] != rows(alone)[0][2]


def test_dry_run_with_base_config_alone_uses_it_as_the_template(write, cli):
    base = write("base.toml", BASE + TEMPLATE)
    code, out, err = cli("sweep", "--base-config", base, "--dry-run")
    assert code == 0, err
    assert err.splitlines() == [
        f"note: --base-config is the legacy form; give it as --template {base} "
        "(see docs/migration.md)"
    ]
    assert f"{base}: 1 trials, strategy random" in out


def test_strategy_random_changes_the_plan(write, cli):
    template = write("t.toml", BASE + TEMPLATE.replace('"random"', '"grid"\nnum_samples = 3'))
    code, grid, _ = cli("sweep", "--template", template, "--dry-run")
    assert code == 0 and "strategy grid" in grid
    assert len(rows(grid)) == 6  # the 2-point grid, 3 times
    code, drawn, err = cli("sweep", "--template", template, "--strategy", "random", "--dry-run")
    assert code == 0 and "strategy random" in drawn
    assert len(rows(drawn)) == 3  # num_samples draws
    assert "--strategy is the legacy form" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["--gpus", "0"],
            "arbiter: error: sweep: a template is required: "
            "--template T (see `arbiter templates`), or the legacy --base-config FILE",
            id="neither-flag",
        ),
        pytest.param(
            ["--base-config", "absent.toml"],
            "arbiter: error: --base-config absent.toml: file not found",
            id="missing-base",
        ),
        pytest.param(
            ["--base-config", "run.toml"],
            "arbiter: error: --base-config run.toml: has no [sweep] table, so there is "
            "nothing to sweep; add --template T (see `arbiter templates`) or a [sweep] "
            "table (see docs/migration.md)",
            id="base-without-sweep",
        ),
        pytest.param(
            ["--base-config", "run.toml", "--strategy", "bayes"],
            "arbiter sweep: error: argument --strategy: invalid choice: 'bayes' "
            "(choose from 'grid', 'random', 'optuna') (see arbiter sweep --help)",
            id="unknown-strategy",
        ),
        pytest.param(
            ["--base-config", "base.toml", "--template", "absent.toml"],
            "arbiter: error: absent.toml: unknown template",
            id="missing-template",
        ),
    ],
)
def test_bad_legacy_input_is_one_line_with_exit_code_2(
    cli, write, monkeypatch, tmp_path, argv, expected
):
    write("run.toml", BASE)
    write("base.toml", BASE)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("sweep", *argv, "--dry-run")
    assert code == ExitCode.USAGE and out == ""
    assert one_error_line(err).startswith(expected)


def test_a_legacy_path_from_engine_gets_a_hint(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, _, err = cli("sweep", "--base-config", f"../{SEED_BASE}", "--dry-run")
    assert code == ExitCode.USAGE
    assert one_error_line(err) == (
        f"arbiter: error: --base-config ../{SEED_BASE}: file not found; did you mean {SEED_BASE}?"
    )


def test_the_seed_command_line(cli, monkeypatch):
    """The seed's `python arbiter_sweep_orchestrator.py --base-config ../configs/sweep_templates/
    base_config.toml --strategy grid --gpus 4`, run from the repository root: the base config has
    no [sweep] table (the orchestrator's own default space is unknown), so it names the templates
    that extend it; with one of them added it plans that template's sweep on the base config."""
    monkeypatch.chdir(ROOT)
    legacy = ["sweep", "--base-config", SEED_BASE, "--strategy", "grid", "--gpus", "4"]
    code, _, err = cli(*legacy, "--dry-run")
    assert code == ExitCode.USAGE
    line = one_error_line(err)
    assert f"--base-config {SEED_BASE}: has no [sweep] table" in line
    assert "deep_narrow_template.toml" in line and "grokking_regime.toml" in line

    code, out, err = cli(*legacy, "--template", "deep_narrow_template.toml", "--dry-run")
    assert code == 0, err
    assert err.splitlines() == [BASE_NOTE.replace("base.toml", "base_config.toml"), STRATEGY_NOTE]
    assert "3 trials, strategy grid" in out and "4 at a time" in out


def test_the_strategy_choices_are_the_schemas(cli):
    from typing import get_args

    from arbiter.config.schema import SweepConfig

    code, _, err = cli("sweep", "--strategy", "x")
    assert code == ExitCode.USAGE
    for strategy in get_args(SweepConfig.model_fields["strategy"].annotation):
        assert f"'{strategy}'" in err


def test_an_old_record_without_base_config_still_loads(tmp_path):
    old = {
        "template": "t.toml",
        "sets": [],
        "template_hash": "0",
        "resolved": {},
        "gpus": 0,
        "cpus_per_trial": 1,
    }
    (tmp_path / "arbiter.json").write_text(json.dumps(old))
    assert read_record(Location.of(tmp_path)).base_config is None


def test_resume_refuses_a_base_config_changed_since_the_start(write, cli, tmp_path):
    base = write("base.toml", BASE)
    template = write("t.toml", TEMPLATE)
    sets = ["sweep.strategy=grid"]
    config = load_config(template, sets, base)
    record = Record(
        str(template),
        sets,
        template_hash(config),
        config.model_dump(mode="json"),
        0,
        1,
        base_config=str(base),
    )
    path = new_experiment(Location.of(tmp_path / "storage"), "exp", record)
    (path / "tuner.pkl").write_text("")  # as if Tune had saved its state
    (path / "experiment_state-0.json").write_text("{}")
    base.write_text(tiny_run(200))
    code, _, err = cli("resume", "exp", "--storage", tmp_path / "storage")
    assert code == ExitCode.USAGE
    assert one_error_line(err) == (
        f"arbiter: error: {template} with its --base-config {base}: changed since the sweep "
        "started; Ray Tune cannot resume a changed search space: restore the template or start a "
        "new sweep"
    )


@pytest.mark.slow
def test_the_legacy_orchestrator_flags_run_a_sweep_and_resume(cluster, write, tmp_path):
    base = write("base.toml", BASE)
    template = write("t.toml", TEMPLATE)
    done = run(
        "sweep",
        "--base-config",
        base,
        "--template",
        template,
        "--strategy",
        "grid",
        "--gpus",
        0,
        "--address",
        cluster,
        "--storage",
        tmp_path,
        "--name",
        "legacy",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert BASE_NOTE in done.stderr.splitlines()
    assert STRATEGY_NOTE in done.stderr.splitlines()
    trials = status("legacy", tmp_path)["trials"]
    assert len(trials) == 2 and {t["status"] for t in trials} == {"TERMINATED"}
    assert sorted(t["config"]["training.weight_decay"] for t in trials) == [0.1, 1.0]
    assert all(t["last"]["step"] == 150 for t in trials)  # the base config's steps
    record = read_record(Location.of(tmp_path / "legacy"))
    assert record.base_config == str(base.resolve())
    assert record.sets == ["sweep.strategy=grid"]
    # resume rebuilds the same template from the record: base config and strategy included
    resumed = run("resume", "legacy", "--storage", tmp_path, "--address", cluster)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "changed since" not in resumed.stderr


def test_the_packaged_base_config_has_no_sweep_table():
    """The seed command's error above rests on this; a [sweep] table here would make it run."""
    assert load_config(packaged_configs() / "sweep_templates" / "base_config.toml").sweep is None
