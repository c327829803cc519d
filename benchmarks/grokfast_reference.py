"""Grokfast's algorithmic-data experiment in a plain PyTorch loop, beside `arbiter train` on
`repro_grokfast.toml`, arm by arm: filter off/on x weight decay 0/0.005.

The reference is their recipe (Lee et al. 2024, ironjr/grokfast `main.py`), written here: x * y
mod 97 for x in 0..96 and y in 1..96 as [x, op, y, =] -> x*y; `torch.manual_seed(seed)`, then
their decoder (token and position tables, two blocks of nn.LayerNorm, nn.MultiheadAttention and
a GELU MLP of 512, whose first norm normalises the residual stream itself; a final LayerNorm and
a bias-free head; PyTorch's default initialisation), then one `torch.randperm` splitting the
table in halves, the first for training; Adam (lr 1e-3, betas 0.9 and 0.98, `weight_decay` on
every parameter) with their warmup, lr x min(1, update / 10) from update 0; per epoch a fresh
permutation of the training half in batches of 512 (the last of 48); Grokfast-EMA (alpha 0.98,
lamb 2.0: the average starts at the first gradient) between backward and the step; validation
accuracy over the whole validation half after every epoch (10 steps), as their code measures it.

Arbiter's side is the command a user types (issue 26's):

    arbiter train --config configs/sweep_templates/repro_grokfast.toml \\
        --set training.grokfast=BOOL --set training.weight_decay=WD --set training.steps=N

Both report the first evaluated step with validation accuracy >= 95% ("not by N" otherwise) and
the accuracy at fixed steps. Goal: each arm within +-40% of the reference, or neither reaching
95% within the budget.

The reference draws its initial weights, split and batch order one of two ways:

- `--seeding grokfast` (the default): as their code draws them, above. A seed is then a fresh
  draw on each side, and what can agree is the spread over seeds.
- `--seeding arbiter`: what `arbiter train` draws for `training.seed` (the template's model
  built after the core's seeding, its weights copied into their decoder; its split; its
  epochs' batches), trained by the same plain loop. The two then start from the same point on
  the same batches, so seed by seed what differs is the loop alone.

    python benchmarks/grokfast_reference.py [--steps 3000] [--seed 0] [--arms ...]
                                            [--seeding grokfast|arbiter] [--whole-batches]
                                            [--smoke-test]

The two of an arm run at once, `--threads` torch threads each (1: the two cores of a small
machine). Prints a markdown table and appends it to docs/reproductions.md (not with
--smoke-test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from report import Started, publish

from arbiter.config.loading import load_config
from arbiter.core.data import ModularTask
from arbiter.core.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "configs" / "sweep_templates" / "repro_grokfast.toml"
REPRODUCTIONS = ROOT / "docs" / "reproductions.md"
P = 97
BATCH = 512
TARGET = 0.95
ARMS = {  # name: (Grokfast filter, weight decay)
    "baseline": (False, 0.0),
    "grokfast": (True, 0.0),
    "weight decay": (False, 0.005),
    "grokfast + weight decay": (True, 0.005),
}
MARKS = (500, 1000, 2000, 3000)
SEEDINGS = ("grokfast", "arbiter")


class ReferenceBlock(nn.Module):
    """Their block: the first LayerNorm replaces the stream, attention adds onto that."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, C), time first
        causal = torch.triu(torch.full((len(x), len(x)), float("-inf")), diagonal=1)
        x = self.ln_1(x)
        x = x + self.attn(x, x, x, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ReferenceDecoder(nn.Module):
    def __init__(self, dim: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tokens = nn.Embedding(P + 2, dim)
        self.positions = nn.Embedding(5, dim)
        self.blocks = nn.ModuleList(ReferenceBlock(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, P + 2, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (T, B) -> (T, B, V)
        h = self.tokens(ids) + self.positions(torch.arange(len(ids)))[:, None]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def arbiter_names(reference: ReferenceDecoder) -> dict[str, torch.Tensor]:
    """Their decoder's tensors under the names of Arbiter's model on the template (Theos): views,
    so that copying into one sets their weight. Their position table has a 5th, unused row."""
    named = {
        "tok_emb.weight": reference.tokens.weight,
        "pos_emb.weight": reference.positions.weight[:4],
        "norm.weight": reference.ln_f.weight,
        "norm.bias": reference.ln_f.bias,
        "lm_head.weight": reference.head.weight,
    }
    for i, block in enumerate(reference.blocks):
        modules = {
            "norm1": block.ln_1,
            "norm2": block.ln_2,
            "attn.proj": block.attn.out_proj,
            "mlp.w1": block.mlp[0],
            "mlp.w2": block.mlp[2],
        }
        for name, module in modules.items():
            named[f"blocks.{i}.{name}.weight"] = module.weight
            named[f"blocks.{i}.{name}.bias"] = module.bias
        named[f"blocks.{i}.attn.qkv.weight"] = block.attn.in_proj_weight
        named[f"blocks.{i}.attn.qkv.bias"] = block.attn.in_proj_bias
    return named


@dataclass
class Draws:
    """What a seed decides: the initial network, each epoch's batches and the validation half,
    as columns [x, op, y, =, answer] (time first, as their code)."""

    model: ReferenceDecoder
    epochs: Iterator[list[torch.Tensor]]
    val: torch.Tensor


def grokfast_draws(seed: int, whole: bool = False) -> Draws:
    """Their code's draws: the global generator seeded, the decoder, then the split."""
    torch.manual_seed(seed)
    model = ReferenceDecoder()
    x, y = torch.cartesian_prod(torch.arange(P), torch.arange(1, P)).T
    table = torch.stack([x, torch.full_like(x, P + 1), y, torch.full_like(x, P), x * y % P])
    train_rows, val_rows = torch.randperm(table.shape[1]).split(table.shape[1] // 2)
    return Draws(model, epochs(table[:, train_rows], whole), table[:, val_rows])


def arbiter_draws(seed: int) -> Draws:
    """`arbiter train`'s draws for `training.seed = seed`: the template's model as the core
    builds it (after seeding the global generator), its weights copied into their decoder; the
    task's split and its epochs' batches (Arbiter's token ids, which the copied embedding
    reads as Arbiter's model would)."""
    config = load_config(TEMPLATE, [f"training.seed={seed}"])
    torch.manual_seed(seed)
    ours = build_model(config).state_dict()
    model = ReferenceDecoder()
    with torch.no_grad():
        for name, tensor in arbiter_names(model).items():
            tensor.copy_(ours[name])
    task = ModularTask(config)
    # the template's epoch_batches: each epoch's last batch is the smaller one
    per_epoch = math.ceil(len(task.train_indices) / config.training.batch_size)

    def columns(ids: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        return torch.cat([ids, answers], dim=1).T

    def batches() -> Iterator[list[torch.Tensor]]:
        while True:
            yield [columns(*task.train_batch()) for _ in range(per_epoch)]

    val = task.val_indices
    return Draws(model, batches(), columns(task.x[val], task.y[val]))


def epochs(train: torch.Tensor, whole: bool) -> Iterator[list[torch.Tensor]]:
    """Each epoch's batches: their `torch.split` of a fresh permutation (9 of 512, then 48);
    with `whole`, batches of exactly 512 drawn on from one permutation into the next (Arbiter's
    batching without `data.epoch_batches`), as many per epoch."""
    n = train.shape[1]
    if not whole:
        while True:
            yield list(train[:, torch.randperm(n)].split(BATCH, dim=1))
    order, position = torch.randperm(n), 0
    while True:
        batches = []
        for _ in range(math.ceil(n / BATCH)):
            parts, need = [], BATCH
            while need:
                if position == n:
                    order, position = torch.randperm(n), 0
                part = order[position : position + need]
                position, need = position + len(part), need - len(part)
                parts.append(part)
            batches.append(train[:, torch.cat(parts)])
        yield batches


def reference(draws: Draws, grokfast: bool, weight_decay: float, steps: int) -> dict[int, float]:
    """Validation accuracy after every epoch of their loop from `draws`, by optimizer step."""
    model, val = draws.model, draws.val
    optimizer = torch.optim.Adam(
        model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=weight_decay
    )
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1 if u > 10 else u / 10)
    average: dict[str, torch.Tensor] = {}
    accuracy: dict[int, float] = {}
    step = 0
    for batches in draws.epochs:
        if step >= steps:
            break
        model.train()
        for batch in batches:
            loss = F.cross_entropy(model(batch[:-1])[-1], batch[-1])
            model.zero_grad()
            loss.backward()
            if grokfast:
                for name, param in model.named_parameters():
                    slow = average.get(name, param.grad)
                    average[name] = slow * 0.98 + param.grad * 0.02
                    param.grad = param.grad + average[name] * 2.0
            optimizer.step()
            warmup.step()
            step += 1
        model.eval()
        with torch.no_grad():
            right = sum(
                int((model(b[:-1])[-1].argmax(-1) == b[-1]).sum()) for b in val.split(BATCH, 1)
            )
        accuracy[step] = right / val.shape[1]
    return accuracy


def start_arbiter(
    grokfast: bool, weight_decay: float, steps: int, seed: int, out: Path, threads: int
) -> subprocess.Popen:
    """`arbiter train` on the template into `out`, in the background (it runs while the
    reference trains), with `threads` torch threads."""
    command = [
        *(sys.executable, "-m", "arbiter", "train", "--config", str(TEMPLATE)),
        *("--set", f"training.grokfast={str(grokfast).lower()}"),
        *("--set", f"training.weight_decay={weight_decay}"),
        *("--set", f"training.steps={steps}", "--set", f"training.seed={seed}"),
        *("--set", "checkpoint.enable=false", "--out", str(out)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


def arbiter_accuracy(run: subprocess.Popen, out: Path) -> dict[int, float]:
    """Validation accuracy at every evaluation of the finished `arbiter train`."""
    _, errors = run.communicate()
    if run.returncode:
        raise SystemExit(f"arbiter train failed: {errors[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    return {r["step"]: r["val/accuracy"] for r in rows if "val/accuracy" in r}


def first_at(accuracy: dict[int, float], target: float = TARGET) -> int | None:
    return next((step for step, acc in sorted(accuracy.items()) if acc >= target), None)


def at(accuracy: dict[int, float], step: int) -> str:
    """The accuracy of the last evaluation at or before `step`."""
    seen = [acc for s, acc in sorted(accuracy.items()) if s <= step]
    return f"{seen[-1]:.3f}" if seen else "-"


@dataclass
class Arm:
    name: str
    reference: dict[int, float]
    arbiter: dict[int, float]

    def verdict(self, steps: int) -> str:
        ref, ours = first_at(self.reference), first_at(self.arbiter)
        if ref is None and ours is None:
            return "agree: neither by the budget"
        if ref is None or ours is None:
            return "DIFFER: one only"
        ratio = ours / ref
        return f"{'agree' if abs(math.log(ratio)) <= math.log(1.4) else 'DIFFER'}: {ratio:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="their default: 0")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument(
        "--whole-batches",
        action="store_true",
        help="the reference without their smaller last batch of each epoch (512 every step)",
    )
    parser.add_argument(
        "--seeding",
        choices=SEEDINGS,
        default="grokfast",
        help="the reference's initial weights, split and batches: as their code or as Arbiter",
    )
    parser.add_argument("--smoke-test", action="store_true", help="30 steps, two arms")
    args = parser.parse_args()
    if args.seeding == "arbiter" and args.whole_batches:
        parser.error("--whole-batches is their draws' option; --seeding arbiter takes Arbiter's")
    torch.set_num_threads(args.threads)
    steps = 30 if args.smoke_test else args.steps
    names = ["baseline", "grokfast + weight decay"] if args.smoke_test else args.arms
    started = Started()
    arms = []
    for name in names:
        grokfast, decay = ARMS[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            run = start_arbiter(grokfast, decay, steps, args.seed, out, args.threads)
            try:
                draws = (
                    arbiter_draws(args.seed)
                    if args.seeding == "arbiter"
                    else grokfast_draws(args.seed, args.whole_batches)
                )
                theirs = reference(draws, grokfast, decay, steps)
            except BaseException:
                run.kill()
                raise
            arms.append(Arm(name, theirs, arbiter_accuracy(run, out)))
        print(f"{name}: done", file=sys.stderr)
    marks = [m for m in MARKS if m <= steps] or [steps]
    header = " | ".join(f"val acc at {m} (ref / arbiter)" for m in marks)
    table = [
        f"| arm | 95% val, reference | 95% val, arbiter | verdict | {header} |",
        "|---|---|---|---|---|" + "---|" * (len(marks) - 1),
    ]
    for arm in arms:
        ref, ours = first_at(arm.reference), first_at(arm.arbiter)
        cells = " | ".join(f"{at(arm.reference, m)} / {at(arm.arbiter, m)}" for m in marks)
        table.append(
            f"| {arm.name} | {ref or f'not by {steps}'} | {ours or f'not by {steps}'} | "
            f"{arm.verdict(steps)} | {cells} |"
        )
    if args.seeding == "arbiter":
        draws_note = "the reference from Arbiter's draws (weights, split, batches) for the seed; "
    elif args.whole_batches:
        draws_note = "the reference in whole batches of 512 (none smaller); "
    else:
        draws_note = ""
    publish(
        started,
        "Grokfast arm by arm: their recipe in a plain loop beside arbiter train",
        f"x * y mod 97 (y from 1), half the table, seed {args.seed}, {steps} steps per run; "
        f"{draws_note}Grokfast-EMA alpha 0.98, lamb 2.0; weight decay 0.005 where named. First "
        "evaluation (every 10 steps) at >= 95% validation accuracy; agree = within +-40% of the "
        "reference, or neither by the budget.\n\n" + "\n".join(table),
        write=not args.smoke_test,
        path=REPRODUCTIONS,
    )


if __name__ == "__main__":
    main()
