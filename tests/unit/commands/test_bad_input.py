"""Every way a user can get input wrong: exit code 2, one line, nothing started or written.

Each case runs the real command line in a fresh Python process (the PROBE below) inside an empty
folder, with the experiments folder ($ARBITER_STORAGE) pointing into it, and checks the project's
rule for user errors: exit code 2; stderr is exactly one line, `arbiter: error: ...` (argparse's
usage errors of a subcommand say `arbiter sweep: error: ...`), naming the file, the key, the bad
value or what is allowed; no traceback; Ray never imported; and no file written or changed, the
experiments folder included.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Calls the command line as `arbiter` does, then says on stdout whether Ray was ever imported.
PROBE = """
import sys
from arbiter.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("ray imported" if "ray" in sys.modules else "ray not imported")
sys.exit(code)
"""
FIRST_WORDS = re.compile(r"arbiter( [a-z-]+)?: error: ")
LONG = "x" * 300  # longer than a file name may be (255 bytes)
HUGE = 10**400  # a TOML integer beyond float range
T = "t.toml"
TEMPLATE = """
[model]
dim = 32
n_layers = 1
n_heads = 2
[training]
steps = 100
[sweep.space]
"training.weight_decay" = [0.1, 1.0]
"""
# A record as `arbiter sweep` writes it, for an experiment that Tune never saved a state of.
RECORD = (
    '{"template": "t.toml", "sets": [], "template_hash": "0", "resolved": {}, "gpus": 0, '
    '"cpus_per_trial": 1}'
)


def space(entry: str, before: str = "") -> str:
    """A template whose space has one entry, e.g. space('"training.seed" = [1, 2]')."""
    return f"{before}[sweep.space]\n{entry}\n"


def case(name, argv, *words, files=None, env=None):
    """One row: argv (`{storage}` is the experiments folder), expected words, files to write."""
    return pytest.param(argv, words, files or {}, env or {}, id=name)


# fmt: off
CASES = [
    # --- template syntax and files ---
    case("bad-toml", ["validate", T], "t.toml", "invalid TOML", files={T: "[model\n"}),
    case("duplicate-key", ["validate", T], "t.toml", "invalid TOML", "line 3",
         files={T: "[model]\ndim = 32\ndim = 64\n"}),
    case("not-utf8", ["validate", T], "t.toml", "cannot be read", "utf-8",
         files={T: b"\xff\xfe[model]\n"}),
    case("missing-file", ["validate", "absent.toml"], "absent.toml: file not found"),
    case("directory", ["validate", "d"], "d: is a directory", files={"d/x.toml": ""}),
    # --- unknown sections and keys ---
    case("unknown-section", ["validate", T], "t.toml: optim: unknown key",
         "allowed here: description, model", files={T: "[optim]\nlr = 1\n"}),
    case("unknown-top-level-key", ["validate", T], "t.toml: foo: unknown key",
         files={T: "foo = 1\n"}),
    case("unknown-key", ["validate", T], "model.width: unknown key", "n_layers",
         files={T: "[model]\nwidth = 3\n"}),
    case("unknown-key-in-sweep", ["validate", T], "sweep.strategies: unknown key", "strategy",
         files={T: "[sweep]\nstrategies = 'grid'\n"}),
    case("unknown-key-in-sweep-asha", ["validate", T], "sweep.asha.grace: unknown key",
         "grace_period, reduction_factor", files={T: "[sweep.asha]\ngrace = 10\n"}),
    case("unknown-key-in-sweep-stop", ["validate", T], "sweep.stop.patince: unknown key",
         "patience", files={T: "[sweep.stop]\nthreshold = 0.9\npatince = 2\n"}),
    case("section-not-a-table", ["validate", T], "t.toml: model: must be a table", "got 3",
         files={T: "model = 3\n"}),
    # --- wrong types ---
    case("wrong-type", ["validate", T], "training.steps", "valid integer", "'many'",
         files={T: "[training]\nsteps = 'many'\n"}),
    case("wrong-type-bool", ["validate", T], "model.flash_attention", "valid boolean", "'maybe'",
         files={T: "[model]\nflash_attention = 'maybe'\n"}),
    case("unknown-preset", ["train", "--config", T], "t.toml: model.preset",
         "'power', 'grokfast' or 'nanda'", "'gpt2'", files={T: "[model]\npreset = 'gpt2'\n"}),
    case("preset-a-table", ["validate", T], "t.toml: model.preset", "'power', 'grokfast' or",
         files={T: "[model]\npreset = { name = 'power' }\n"}),
    case("unknown-preset-in-a-sweep", ["sweep", "--template", T, "--gpus", "0"],
         "sweep.space", "model.preset", "'nanda'", "'power2'",
         files={T: space('"model.preset" = ["nanda", "power2"]')}),
    case("wrong-type-string", ["validate", T], "description", "valid string",
         files={T: "description = ['a']\n"}),
    case("betas-not-a-pair", ["validate", T], "training.betas", "valid tuple", "0.9",
         files={T: "[training]\nbetas = 0.9\n"}),
    case("betas-three-values", ["validate", T], "training.betas", "at most 2 items",
         files={T: "[training]\nbetas = [0.9, 0.9, 0.9]\n"}),
    case("space-not-a-table", ["validate", T], "sweep.space: must be a table", "got 3",
         files={T: "[sweep]\nspace = 3\n"}),
    # --- values out of range ---
    case("out-of-range", ["validate", T], "data.train_fraction", "less than 1", "1.5",
         files={T: "[data]\ntrain_fraction = 1.5\n"}),
    case("negative-steps", ["validate", T], "training.steps", "greater than 0", "-5",
         files={T: "[training]\nsteps = -5\n"}),
    case("dropout-1", ["validate", T], "model.dropout", "less than 1", "1.0",
         files={T: "[model]\ndropout = 1.0\n"}),
    case("betas-out-of-range", ["validate", T], "training.betas",
         "betas[1] = 1.0 must be in [0, 1)", files={T: "[training]\nbetas = [0.9, 1.0]\n"}),
    case("warmup-over-steps", ["validate", T], "training.warmup_steps",
         "200 exceeds training.steps = 100", "allowed: 0..steps",
         files={T: "[training]\nsteps = 100\nwarmup_steps = 200\n"}),
    case("grokfast-alpha-1", ["validate", T], "training.grokfast_alpha", "less than 1",
         files={T: "[training]\ngrokfast_alpha = 1.0\n"}),
    case("infinite-weight-decay", ["validate", T], "training.weight_decay", "finite number",
         "inf", files={T: "[training]\nweight_decay = inf\n"}),
    case("grokking-fit-budget-over-steps", ["validate", T], "sweep.grokking.fit_budget",
         "500 exceeds training.steps = 100",
         files={T: "[training]\nsteps = 100\n[sweep]\nscheduler = 'grokking'\n"
                   "[sweep.grokking]\nfit_budget = 500\n"}),
    case("pbt-interval-not-a-checkpoint-multiple", ["validate", T],
         "sweep.pbt.perturbation_interval", "not a multiple of checkpoint.interval = 1000",
         files={T: space('"training.weight_decay" = [0.1, 1.0]', "[sweep]\nscheduler = 'pbt'\n"
                         "[sweep.pbt]\nperturbation_interval = 1500\n")}),
    case("pbt-over-a-structural-key", ["validate", T], "sweep.space.model.dim",
         "scheduler 'pbt' cannot change it", "PBT can mutate training.learning_rate",
         files={T: space('"model.dim" = [32, 64]', "[sweep]\nscheduler = 'pbt'\n")}),
    case("budget-derives-a-swept-key", ["validate", T], "sweep.budget.derive",
         "model.dim is set by the budget and cannot also be swept",
         files={T: space('"model.dim" = [32, 64]',
                         "[sweep]\nbudget = { params = 1e5, derive = 'model.dim' }\n")}),
    case("budget-derives-an-unknown-key", ["validate", T], "sweep.budget.derive",
         "'model.dim' or 'model.n_layers'", "'model.mlp_dim'",
         files={T: "[sweep]\nbudget = { params = 1e5, derive = 'model.mlp_dim' }\n"}),
    case("budget-not-positive", ["validate", T], "sweep.budget.params", "greater than 0",
         files={T: "[sweep]\nbudget = { params = -1 }\n"}),
    case("budget-out-of-reach", ["sweep", "--template", T, "--dry-run"], "t.toml: sweep.budget",
         "trial 1 (model.n_layers=32)", "(dim = 16, n_heads = 1)", "35% over the budget of "
         "100,000", "allowed: within 5%",
         files={T: space('"model.n_layers" = [1, 32]',
                         "[sweep]\nbudget = { params = 1e5, head_size = 16 }\n")}),
    case("bad-literal", ["validate", T], "model.mlp", "'swiglu', 'gelu' or 'relu'", "'tanh'",
         files={T: "[model]\nmlp = 'tanh'\n"}),
    case("heads", ["validate", T], "model.n_heads", "model.dim = 100 is not divisible",
         files={T: "[model]\ndim = 100\nn_heads = 3\n"}),
    case("mlp-on-tokens", ["validate", T], "model.arch", "needs data.task = 'modular'",
         "allowed for 'tokens': 'transformer'",
         files={T: "[model]\narch = 'mlp'\nmlp = 'relu'\nvocab_size = 50\n[data]\n"
                   "task = 'tokens'\npath = 'x.bin'\n[training]\nseq_len = 8\n"}),
    case("mlp-swiglu", ["validate", T], "model.mlp", "'swiglu' is not an activation",
         "allowed: 'relu', 'gelu'", files={T: "[model]\narch = 'mlp'\nmlp = 'swiglu'\n"}),
    case("mlp-dropout", ["validate", T], "model.dropout", "does not apply to model.arch = 'mlp'",
         "allowed: 0", files={T: "[model]\narch = 'mlp'\ndropout = 0.1\n"}),
    case("mlp-checkpointing", ["validate", T], "training.gradient_checkpointing",
         "does not apply to model.arch = 'mlp'", "allowed: false",
         files={T: "[model]\narch = 'mlp'\n[training]\ngradient_checkpointing = true\n"}),
    case("odd-head-size", ["validate", T], "model.n_heads", "head size dim / n_heads = 3 is odd",
         files={T: "[model]\ndim = 48\nn_heads = 16\n"}),
    case("not-prime", ["validate", T], "data.modulus: 100 is not prime",
         files={T: "[data]\noperation = 'div'\nmodulus = 100\n"}),
    case("tokens-without-path", ["validate", T], "data.path", "required for task = 'tokens'",
         files={T: "[data]\ntask = 'tokens'\n"}),
    case("batch-size-half", ["validate", T], "training.batch_size",
         "whole number greater than 0, or 'full'", "'half'",
         files={T: "[training]\nbatch_size = 'half'\n"}),
    case("full-batch-with-tokens", ["validate", T], "training.batch_size",
         "'full' needs data.task = 'modular'",
         files={T: "[data]\ntask = 'tokens'\npath = 'd'\n[model]\nvocab_size = 256\n"
                   "[training]\nseq_len = 8\nbatch_size = 'full'\n"}),
    case("full-batch-with-accumulation", ["validate", T], "training.batch_size",
         "gradient_accumulation = 1, got 4",
         files={T: "[training]\nbatch_size = 'full'\ngradient_accumulation = 4\n"}),
    case("unknown-optimizer", ["validate", T, "--set", "training.optimizer=lion"],
         "--set: training.optimizer", "'adamw', 'adam' or 'sgd'", "'lion'", files={T: TEMPLATE}),
    case("unknown-loss", ["validate", T], "training.loss", "'softmax' or 'stablemax'",
         "'sparsemax'", files={T: "[training]\nloss = 'sparsemax'\n"}),
    case("eps-0", ["validate", T], "training.eps", "greater than 0", "0",
         files={T: "[training]\neps = 0\n"}),
    case("unknown-split", ["validate", T], "data.split", "'random' or 'no_mirror'",
         "'diagonal'", files={T: "[data]\nsplit = 'diagonal'\n"}),
    case("init-scale-0", ["validate", T], "model.init_scale", "greater than 0",
         files={T: "[model]\ninit_scale = 0.0\n"}),
    case("vocab-contradicts-task", ["validate", T], "model.vocab_size", "contradicts",
         "omit it", files={T: "[model]\nvocab_size = 10\n"}),
    # --- search spaces ---
    case("bad-distribution", ["validate", T], 'sweep.space."training.seed"',
         "unknown distribution 'gauss'", "allowed: choice, uniform",
         files={T: space('"training.seed" = { gauss = [1, 2] }')}),
    case("distribution-arity", ["validate", T], 'sweep.space."training.weight_decay"',
         "uniform takes [low, high], got 1 values",
         files={T: space('"training.weight_decay" = { uniform = [1] }')}),
    case("low-above-high", ["validate", T], 'sweep.space."training.learning_rate"',
         "loguniform needs low < high", "[0.01, 0.0001]",
         files={T: space('"training.learning_rate" = { loguniform = [1e-2, 1e-4] }')}),
    case("distribution-not-numbers", ["validate", T], "uniform arguments must be numbers",
         files={T: space('"training.weight_decay" = { uniform = ["a", "b"] }')}),
    case("distribution-infinite", ["validate", T], 'sweep.space."training.weight_decay"',
         "must be finite", "[0, inf]",
         files={T: space('"training.weight_decay" = { uniform = [0, inf] }')}),
    case("distribution-int-too-large", ["validate", T], 'sweep.space."training.seed"',
         "must be finite", files={T: space(f'"training.seed" = {{ randint = [0, {HUGE}] }}')}),
    case("quantized-bounds-off-grid", ["validate", T], 'sweep.space."training.weight_decay"',
         "multiples of q = 0.25", "[0.1, 1.0]",
         files={T: space('"training.weight_decay" = { quniform = [0.1, 1.0, 0.25] }')}),
    case("bad-swept-key", ["validate", T], 'sweep.space."training.lr"',
         "'training.lr' is not a config key", "learning_rate",
         files={T: space('"training.lr" = [1, 2]')}),
    case("unsweepable-sweep-key", ["validate", T], "'sweep.num_samples' is not a config key",
         "allowed under the top level: model, training",
         files={T: space('"sweep.num_samples" = [1, 2]')}),
    case("unsweepable-table", ["validate", T], "sweep.space.model", "is a whole table",
         files={T: space('"model" = [1, 2]')}),
    case("empty-grid", ["validate", T], 'sweep.space."training.seed"', "an empty grid",
         files={T: space('"training.seed" = []')}),
    case("invalid-grid-point", ["validate", T], "trial 1 (model.n_heads=5)", "model.n_heads",
         files={T: space('"model.n_heads" = [2, 5]', "[model]\ndim = 96\n")}),
    case("invalid-grid-point-two-axes", ["validate", T],
         "t.toml: sweep.space: trial 1 (model.dim=64, model.n_heads=5)",
         "not divisible by n_heads = 5",
         files={T: space('"model.dim" = [64, 96]\n"model.n_heads" = [4, 5]')}),
    # --- --set ---
    case("bad-set", ["sweep", "--template", T, "--set", "steps", "--dry-run"],
         "--set: steps", "expected KEY=VALUE", files={T: TEMPLATE}),
    case("bad-set-value", ["sweep", "--template", T, "--set", "training.steps=-1", "--dry-run"],
         "--set: training.steps", "greater than 0", files={T: TEMPLATE}),
    case("set-unknown-key", ["validate", T, "--set", "training.lr=0.1"],
         "--set: training.lr: unknown key", "learning_rate", files={T: TEMPLATE}),
    case("set-unknown-nested-key", ["validate", T, "--set", "training.x.y=1"],
         "--set: training.x: unknown key", files={T: TEMPLATE}),
    case("set-not-a-dotted-key", ["validate", T, "--set", "a b=1"],
         "--set: a b=1", "is not a dotted TOML key", files={T: TEMPLATE}),
    case("set-bad-literal", ["validate", T, "--set", "training.precision=bf17"],
         "--set: training.precision", "'auto', 'bf16', 'fp16' or 'fp32'", "'bf17'",
         files={T: TEMPLATE}),
    # --- flags ---
    case("negative-gpus", ["sweep", "--template", T, "--gpus", "-1"],
         "--gpus", "must be 0 or more", files={T: TEMPLATE}),
    case("gpus-not-a-number", ["sweep", "--template", T, "--gpus", "four"],
         "--gpus", "expected a whole number", "'four'", files={T: TEMPLATE}),
    case("cpus-per-trial-0", ["sweep", "--template", T, "--cpus-per-trial", "0"],
         "--cpus-per-trial", "must be 1 or more, got 0", files={T: TEMPLATE}),
    case("trials-per-gpu-0", ["sweep", "--template", T, "--trials-per-gpu", "0"],
         "--trials-per-gpu", "from 1 to 64 or auto, got 0", files={T: TEMPLATE}),
    case("trials-per-gpu-negative", ["sweep", "--template", T, "--trials-per-gpu", "-2"],
         "--trials-per-gpu", "from 1 to 64 or auto, got -2", files={T: TEMPLATE}),
    case("trials-per-gpu-not-a-number", ["sweep", "--template", T, "--trials-per-gpu", "many"],
         "--trials-per-gpu", "or auto, got 'many'", files={T: TEMPLATE}),
    case("trials-per-gpu-over-64", ["sweep", "--template", T, "--trials-per-gpu", "65"],
         "--trials-per-gpu", "from 1 to 64 or auto, got 65", files={T: TEMPLATE}),
    case("trials-per-gpu-on-cpus", ["sweep", "--template", T, "--gpus", "0",
                                    "--trials-per-gpu", "4"],
         "--trials-per-gpu 4", "--gpus is 0", "--cpus-per-trial", files={T: TEMPLATE}),
    case("trials-per-gpu-auto-on-cpus", ["sweep", "--template", T, "--gpus", "0",
                                         "--trials-per-gpu", "auto"],
         "--trials-per-gpu auto", "packs trials onto GPUs", files={T: TEMPLATE}),
    case("trials-per-gpu-in-template", ["validate", T], "sweep.trials_per_gpu",
         "from 1 to 64 or 'auto', got 'all'",
         files={T: "[sweep]\ntrials_per_gpu = 'all'\n"}),
    case("trials-per-gpu-0-in-template", ["validate", T], "sweep.trials_per_gpu",
         "from 1 to 64 or 'auto', got 0", files={T: "[sweep]\ntrials_per_gpu = 0\n"}),
    case("unknown-flag", ["templates", "--colour"], "unrecognized arguments: --colour"),
    case("missing-template", ["sweep", "--gpus", "0"], "required: --template"),
    case("no-command", [], "required: command"),
    case("unknown-command", ["sweeep"], "invalid choice: 'sweeep'", "sweep"),
    case("unknown-tier", ["train", "--tier", "mid_vram"], "invalid choice: 'mid_vram'",
         "high_vram"),
    case("config-and-tier", ["train", "--config", T, "--tier", "low_vram"], "not allowed with",
         files={T: ""}),
    # --- extends ---
    case("missing-extends", ["validate", T], "t.toml: extends", "'base.toml' not found",
         files={T: 'extends = "base.toml"\n'}),
    case("cyclic-extends", ["validate", T], "extends: cycle", "t.toml -> u.toml -> t.toml",
         files={T: 'extends = "u.toml"\n', "u.toml": 'extends = "t.toml"\n'}),
    case("extends-not-a-string", ["validate", T], "t.toml: extends",
         "must be a file name string", files={T: "extends = 3\n"}),
    case("extends-name-too-long", ["validate", T], "t.toml: extends", "not found",
         files={T: f'extends = "{LONG}.toml"\n'}),
    case("error-in-the-extended-file", ["validate", T], "base.toml: model.width: unknown key",
         files={T: 'extends = "base.toml"\n', "base.toml": "[model]\nwidth = 3\n"}),
    # --- experiments: names and folders ---
    case("resume-unknown", ["resume", "nope"], "nope: no Arbiter experiment", "arbiter.json"),
    case("status-unknown", ["status", "nope"], "nope: no Arbiter experiment", "arbiter.json"),
    case("report-unknown", ["report", "nope"], "nope: no Arbiter experiment", "arbiter.json"),
    case("status-name-too-long", ["status", LONG], "no Arbiter experiment"),
    case("resume-without-tune-state", ["resume", "exp"], "exp: cannot be resumed",
         "before Ray Tune saved its state", files={"storage/exp/arbiter.json": RECORD}),
    case("status-unreadable-record", ["status", "exp"], "arbiter.json",
         "unreadable experiment record", files={"storage/exp/arbiter.json": "{"}),
    case("status-record-of-another-version", ["status", "exp"], "exp/arbiter.json: model.width",
         "unknown key", "another version of Arbiter",
         files={"storage/exp/arbiter.json": RECORD.replace("{}", '{"model": {"width": 3}}')}),
    case("name-escapes-up", ["sweep", "--template", T, "--name", "../x"],
         "--name '../x'", "plain folder name", "printable characters except '/'",
         files={T: TEMPLATE}),
    case("name-absolute", ["sweep", "--template", T, "--name", "/abs"],
         "--name '/abs'", "plain folder name", files={T: TEMPLATE}),
    case("name-nested", ["sweep", "--template", T, "--name", "a/b"],
         "--name 'a/b'", "plain folder name", files={T: TEMPLATE}),
    case("name-dot-dot", ["sweep", "--template", T, "--name", ".."],
         "--name '..'", "not '.' or '..'", files={T: TEMPLATE}),
    case("name-too-long", ["sweep", "--template", T, "--name", LONG],
         "--name 'xxx", "at most 255 bytes", files={T: TEMPLATE}),
    case("name-with-newline", ["sweep", "--template", T, "--name", "a\nb"],
         "--name 'a\\nb'", "printable characters", files={T: TEMPLATE}),
    case("name-taken", ["sweep", "--template", T, "--name", "taken"],
         "--name taken", "already exists", "arbiter resume taken",
         files={T: TEMPLATE, "storage/taken/arbiter.json": RECORD}),
    case("storage-is-a-file", ["sweep", "--template", T, "--storage", "file", "--dry-run"],
         "--storage", "file: is a file", "give a folder", files={T: TEMPLATE, "file": "x"}),
    case("storage-env-is-a-file", ["status", "nope"], "file: is a file", "give a folder",
         files={"file": "x"}, env={"ARBITER_STORAGE": "file"}),
    case("storage-name-too-long", ["sweep", "--template", T, "--storage", LONG, "--dry-run"],
         "--storage", "cannot be used", "too long", files={T: TEMPLATE}),
    # --- templates ---
    case("unknown-template", ["sweep", "--template", "nope.toml", "--dry-run"],
         "nope.toml: unknown template", "quickstart.toml"),
    case("template-name-too-long", ["sweep", "--template", LONG, "--dry-run"],
         "unknown template"),
    case("run-config-as-template", ["sweep", "--template", T, "--dry-run"],
         "t.toml: has no [sweep] table", "arbiter train", files={T: "[model]\ndim = 64\n"}),
    # --- train and prepare-text ---
    case("train-config-missing", ["train", "--config", "absent.toml"],
         "absent.toml: file not found"),
    case("train-config-bad-key", ["train", "--config", T], "t.toml: model.width: unknown key",
         files={T: "[model]\nwidth = 3\n"}),
    case("train-resume-without-checkpoint", ["train", "--config", T, "--out", "out", "--resume"],
         "--resume: no valid checkpoint", "out/checkpoints", files={T: TEMPLATE}),
    case("train-out-too-long", ["train", "--config", T, "--out", LONG], "--out",
         "cannot be used", files={T: TEMPLATE}),
    case("prepare-text-missing", ["prepare-text", "absent.txt", "--out", "tokens"],
         "absent.txt: cannot read", "file not found"),
    case("prepare-text-vocab-too-small", ["prepare-text", "c.txt", "--out", "tokens",
                                          "--vocab-size", "100"],
         "--vocab-size", "from 256 (bytes) to 65536", files={"c.txt": "some text\n"}),
    case("prepare-text-vocab-too-large", ["prepare-text", "c.txt", "--out", "tokens",
                                          "--vocab-size", "70000"],
         "--vocab-size", "to 65536 (uint16 token ids), got 70000", files={"c.txt": "text\n"}),
    case("prepare-text-bytes-with-a-vocab", ["prepare-text", "c.txt", "--out", "tokens",
                                             "--tokenizer", "bytes", "--vocab-size", "512"],
         "--tokenizer bytes", "not --vocab-size 512", files={"c.txt": "some text\n"}),
    case("prepare-text-tokenizer-missing", ["prepare-text", "c.txt", "--out", "tokens",
                                            "--tokenizer", "tok.json"],
         "--tokenizer tok.json: file not found", files={"c.txt": "some text\n"}),
    case("prepare-text-val-fraction", ["prepare-text", "c.txt", "--out", "tokens",
                                       "--val-fraction", "1.5"],
         "val_fraction = 1.5", "between 0 and 1", files={"c.txt": "some text\n"}),
]
# fmt: on


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` with a hash of its content ("dir" for folders)."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else _digest(p)
        for p in sorted(folder.rglob("*"))
    }


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("argv", "words", "files", "env"), CASES)
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, argv, words, files, env):
    work = tmp_path / "work"
    storage = work / "storage"
    for name, content in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    work.mkdir(exist_ok=True)
    before = snapshot(work)
    environment = {**os.environ, "ARBITER_STORAGE": str(storage), **env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err, out = done.stderr, done.stdout
    assert done.returncode == 2, (done.returncode, err)
    assert "Traceback" not in err + out, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert FIRST_WORDS.match(lines[0]), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert out == "ray not imported\n", out  # nothing else on stdout, and Ray never imported
    assert snapshot(work) == before  # nothing written, changed or removed
    if not any(name.startswith("storage/") for name in files):
        assert not storage.exists() or not any(storage.iterdir())
