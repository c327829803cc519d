"""Deep & narrow against wide & shallow at equal parameter budgets, on real English text.

For each budget, one `arbiter sweep` of depths x seeds whose width `[sweep] budget` derives per
trial (tied embeddings, GELU MLP, 16-wide heads), on a BPE of the corpus from `arbiter
prepare-text`, every trial for the same steps and so the same tokens; the table gives each
shape's validation loss (median and range over the seeds) and how many epochs of the unique
tokens it saw. MobileLLM (Liu et al. 2024) found deeper better than wider at 125M; the question
here is whether the direction holds at a few million parameters in a repeated-data regime.

The corpus is the prose of Python's documentation sources (tutorial, reference, how-tos, FAQ:
English in reST, 1.7 MB, from Debian's `python3.11-doc`, installed with apt-get when missing and
never committed): little enough that a trial of a few thousand steps sees it more than once.
`--corpus PATH...` uses other text files or folders. The smoke test trains on Debian's licence
texts (/usr/share/common-licenses), which every Debian has.

    python benchmarks/deep_narrow.py [--budgets 0.5e6 2e6] [--depths 2 4 8 16] [--seeds 0 1 2]
                                     [--steps 2000] [--gpus N] [--corpus PATH...] [--smoke-test]

Prints a markdown table and appends it to docs/deep_narrow.md (not with --smoke-test).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interrupts import EXIT_INTERRUPTED, run_through_interrupts
from matplotlib.figure import Figure
from report import Started, publish

from arbiter.commands.report import load_report
from arbiter.config.estimate import parameter_count
from arbiter.config.loading import load_config
from arbiter.config.trials import plan_trials
from arbiter.experiments.location import Location
from arbiter.report.groups import Band, band, seed_groups
from arbiter.report.style import DPI, colors

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "deep_narrow.md"
FIGURE = ROOT / "docs" / "deep_narrow" / "curves.png"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
# the prose parts (1.7 MB, ~0.56M tokens): little enough that a trial repeats it
DOC_PARTS = ("tutorial", "reference", "howto", "faq")
PACKAGE = "python3.11-doc"
LICENSES = Path("/usr/share/common-licenses")
TEMPLATE = """\
description = "deep & narrow study: depth at {budget:.0f} parameters"
[model]
dim = 64
n_heads = 4
vocab_size = {vocab}
mlp = "gelu"
tie_embeddings = true
[training]
batch_size = {batch}
seq_len = {seq_len}
learning_rate = 3e-3
lr_schedule = "cosine"
warmup_steps = {warmup}
weight_decay = 0.1
betas = [0.9, 0.95]
steps = {steps}
eval_interval = {eval_interval}
precision = "fp32"
[data]
task = "tokens"
path = "{tokens}"
[checkpoint]
interval = {steps}
[logging]
log_interval = {eval_interval}
enable_tensorboard = false
[sweep]
metric = "val/loss"
mode = "min"
budget = {{ params = {budget}, derive = "model.dim", head_size = 16, tolerance = 0.1 }}
[sweep.space]
"model.n_layers" = {depths}
"training.seed" = {seeds}
"""


def python_docs() -> list[Path]:
    """The DOC_PARTS of Python's documentation sources (installed with apt-get when missing)."""
    if not PYTHON_DOCS.is_dir():
        if shutil.which("apt-get") is None:
            raise SystemExit(f"no {PYTHON_DOCS} and no apt-get: give --corpus PATH...")
        print(f"installing {PACKAGE} for its English text", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=True)
    return [PYTHON_DOCS / part for part in DOC_PARTS]


def text_files(paths: list[Path]) -> list[Path]:
    """The non-empty files among `paths` and under its folders."""
    found = (f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))))
    files = [f for f in found if f.is_file() and f.stat().st_size]
    if not files:
        raise SystemExit(f"no text under {', '.join(map(str, paths))}")
    return files


def arbiter(*argv: str) -> int:
    """`arbiter ...`, its output on stderr (stdout is the table), stopped as Ctrl-C would."""
    code = run_through_interrupts([sys.executable, "-m", "arbiter", *argv], stdout=sys.stderr)
    if code == EXIT_INTERRUPTED:
        raise SystemExit(code)
    if code:
        raise SystemExit(f"arbiter {argv[0]} failed (exit code {code})")
    return code


@dataclass
class Depth:
    """One depth at one budget: its shape and its seeds' validation loss against tokens seen."""

    budget: float
    layers: int
    dim: int
    heads: int
    params: int
    seeds: int
    epochs: float  # of the unique training tokens, at the end
    tokens: list[float]  # the band's x: tokens seen at each evaluation
    curve: Band  # val/loss over the seeds: median and min-max

    def row(self) -> str:
        median, low, high = self.curve.median[-1], self.curve.low[-1], self.curve.high[-1]
        spread = f"{low:.3f}-{high:.3f}" if low != high else "-"
        return (
            f"| {self.budget / 1e6:g}M | {self.layers} | {self.dim} ({self.heads} heads) | "
            f"{self.params / 1e6:.2f}M | {median:.3f} | {spread} | {self.seeds} | "
            f"{self.epochs:.2f} |"
        )


def study(budget: float, args: argparse.Namespace, work: Path) -> list[Depth]:
    """One budget's sweep, read back as one `Depth` per depth (the report's seed groups)."""
    template = work / f"budget-{budget:.0f}.toml"
    template.write_text(
        TEMPLATE.format(
            budget=budget,
            vocab=args.vocab_size,
            batch=args.batch,
            seq_len=args.seq_len,
            warmup=max(1, args.steps // 20),
            steps=args.steps,
            eval_interval=args.eval_interval,
            tokens=work / "tokens",
            depths=list(args.depths),
            seeds=list(args.seeds),
        )
    )
    sizes = {}  # depth -> (dim, heads, params): the budget's own sizing, as the dry run shows
    for trial in plan_trials(load_config(template), str(template)):
        model = trial.config.model
        sizes[model.n_layers] = (model.dim, model.n_heads, parameter_count(trial.config))
    name = template.stem
    placement = ["--gpus", str(args.gpus)] + (["--cpus-per-trial", "1"] if not args.gpus else [])
    arbiter(
        "sweep", "--template", str(template), *placement, "--storage", str(work), "--name", name
    )
    depths = []
    for group in seed_groups(load_report(Location.of(work / name))):
        layers = group.config["model.n_layers"]
        curve = band(group, "val/loss")
        depths.append(
            Depth(
                budget,
                layers,
                *sizes[layers],
                seeds=len(group.trials),
                epochs=max(t.rows[-1].get("epochs", math.nan) for t in group.trials),
                tokens=[s * args.batch * args.seq_len for s in curve.steps],
                curve=curve,
            )
        )
    return sorted(depths, key=lambda d: d.layers)


def draw(depths: list[Depth], path: Path) -> None:
    """One panel per budget: each depth's median validation loss against tokens seen, with the
    seeds' min-max band."""
    budgets = sorted({d.budget for d in depths})
    figure = Figure(figsize=(5 * len(budgets), 4), layout="constrained")
    axes = figure.subplots(1, len(budgets), squeeze=False, sharey=True)[0]
    layers = sorted({d.layers for d in depths})
    palette = dict(zip(layers, colors(len(layers)), strict=True))
    for ax, budget in zip(axes, budgets, strict=True):
        for d in (d for d in depths if d.budget == budget):
            color = palette[d.layers]
            label = f"{d.layers} layers x {d.dim}"
            ax.plot(d.tokens, d.curve.median, color=color, label=label)
            ax.fill_between(d.tokens, d.curve.low, d.curve.high, color=color, alpha=0.2)
        ax.set_title(f"{budget / 1e6:g}M parameters")
        ax.set_xlabel("tokens seen")
        ax.legend()
    axes[0].set_ylabel("validation loss")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5e6, 2e6])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to use (0: CPU trials)")
    parser.add_argument(
        "--corpus", type=Path, nargs="+", help="text files or folders (default: Python's docs)"
    )
    parser.add_argument("--smoke-test", action="store_true", help="tiny: write nothing")
    args = parser.parse_args()
    if args.smoke_test:
        args.budgets, args.depths, args.seeds = [2e5], [1, 2], [0]
        args.steps, args.eval_interval, args.vocab_size = 30, 10, 512
        args.corpus = args.corpus or [LICENSES]
    started = Started(uses_gpu=bool(args.gpus))
    paths = args.corpus or python_docs()
    files = text_files(paths)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare = ["--out", str(work / "tokens"), "--vocab-size", str(args.vocab_size)]
        arbiter("prepare-text", *map(str, files), *prepare)
        depths = [d for budget in args.budgets for d in study(budget, args, work)]
    if not args.smoke_test:
        draw(depths, FIGURE)
    text = (
        f"{len(files)} files of {', '.join(map(str, paths))}, a BPE of {args.vocab_size} tokens; "
        f"batch {args.batch} x {args.seq_len} tokens, {args.steps} steps per trial (AdamW 3e-3, "
        "cosine, weight decay 0.1, tied embeddings, GELU MLP, 16-wide heads), validation loss at "
        "the last evaluation.\n\n"
        "| budget | layers | width | params | val loss (median) | range | seeds | epochs |\n"
        "|---|---:|---|---:|---:|---|---:|---:|\n" + "\n".join(d.row() for d in depths)
    )
    publish(
        started,
        "deep & narrow against wide & shallow at equal budgets",
        text,
        write=not args.smoke_test,
        path=STUDY,
    )


if __name__ == "__main__":
    main()
