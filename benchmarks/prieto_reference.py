"""Prieto et al.'s Figure 1 StableMax run in a plain PyTorch loop: to tell the seed from the code.

Their recipe, from their paper and the settings of their script (run_main_experiments.sh): the
one-hot MLP (one-hot(a) ++ one-hot(b) -> 200 -> 200 -> 113, ReLU, no biases, `models.OneHotMLP`
with PyTorch's default init), a + b mod 113 with 40% of the table for training, full batch,
AdamW lr 0.01, betas (0.9, 0.999), eps 1e-25, no weight decay, and the StableMax loss as they
write it, log(s / sum s) in float64. Only the network is Arbiter's; the loop and the loss are
not the training core's. The split and the initial weights are drawn one of two ways:

- `--seeding prieto` (seed 42 unless `--seed`): as their code draws them: `torch.manual_seed`,
  one `torch.randperm` over the table in a-major order (the first 40% train), then the three
  layers' default init in order; each step draws a `torch.randperm` of the batch, as theirs.
  Seed 42 is their run.
- `--seeding arbiter` (seed 0 unless `--seed`): Arbiter's split, batch order and initial
  weights for `training.seed`, as `arbiter train` on `repro_prieto_mlp.toml` draws them, so
  that the two can be compared step by step.

    python benchmarks/prieto_reference.py [--seeding prieto|arbiter] [--seed N]
                                          [--steps 80000] [--threads 1] [--smoke-test]

It prints validation accuracy every 5,000 steps as a markdown table, and the first evaluation
(every 1,000 steps) at 50% and at 90%. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from arbiter.config.loading import load_config
from arbiter.config.templates import find_template
from arbiter.core.data import make_task
from arbiter.core.model import build_model
from models import OneHotMLP, OneHotMLPConfig

P = 113
TRAIN_FRACTION = 0.4
EVAL_EVERY = 1000
TABLE_EVERY = 5000

Batch = tuple[torch.Tensor, torch.Tensor]  # token ids (B, T), answers (B,)


@dataclass
class Setup:
    model: torch.nn.Module
    next_batch: Callable[[], Batch]  # this step's full batch, in this step's order
    val: Batch


def prieto_seeding(seed: int) -> Setup:
    """Their split and initial weights: the global generator, in their code's order."""
    torch.manual_seed(seed)
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).unbind(1)  # a-major, as theirs
    ids, answers = torch.stack([a, b], 1), (a + b) % P
    order = torch.randperm(len(ids))  # what their random_split draws
    n_train = int(TRAIN_FRACTION * len(ids))
    train, val = order[:n_train], order[n_train:]
    train_ids, train_answers = ids[train], answers[train]
    model = OneHotMLP(OneHotMLPConfig(symbols=P, seq_len=2, reads=(0, 1), dim=200, n_layers=2))

    def next_batch() -> Batch:
        shuffle = torch.randperm(n_train)  # their loop's: it only changes the rounding
        return train_ids[shuffle], train_answers[shuffle]

    return Setup(model, next_batch, (ids[val], answers[val]))


def arbiter_seeding(seed: int) -> Setup:
    """Arbiter's split, batch order and initial weights for `training.seed = seed`."""
    config = load_config(find_template("repro_prieto_mlp.toml"), [f"training.seed={seed}"])
    torch.manual_seed(seed)  # as the core seeds torch before it builds the model
    model = build_model(config)
    task = make_task(config)
    chunks = task.eval_splits()["val"]
    val_ids, val_answers = torch.cat([x for x, _ in chunks]), torch.cat([y for _, y in chunks])

    def next_batch() -> Batch:
        ids, answers = task.train_batch()
        return ids, answers[:, 0]

    return Setup(model, next_batch, (val_ids, val_answers[:, 0]))


def stablemax_loss(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Their StableMax cross-entropy: s(x) = x + 1 at and above 0, 1 / (1 - x) below, and
    log(s / sum s) of the answer, in float64."""
    x = logits.to(torch.float64)
    s = torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)
    return -torch.log(s / s.sum(-1, keepdim=True)).gather(1, answers[:, None]).mean()


def train(setup: Setup, steps: int) -> dict[int, float]:
    """Validation accuracy every EVAL_EVERY steps (and at the last)."""
    model = setup.model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-25, weight_decay=0.0
    )
    accuracy, start = {}, time.perf_counter()
    for step in range(1, steps + 1):
        ids, answers = setup.next_batch()
        optimizer.zero_grad()
        stablemax_loss(model(ids)[:, 0], answers).backward()
        optimizer.step()
        if step % EVAL_EVERY == 0 or step == steps:
            with torch.no_grad():
                predicted = model(setup.val[0])[:, 0].argmax(-1)
            accuracy[step] = (predicted == setup.val[1]).double().mean().item()
            elapsed = time.perf_counter() - start
            print(
                f"step {step}: validation accuracy {accuracy[step]:.4f} ({elapsed:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeding", choices=["prieto", "arbiter"], default="prieto")
    parser.add_argument("--seed", type=int, help="42 with --seeding prieto, else 0")
    parser.add_argument("--steps", type=int, default=80000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--smoke-test", action="store_true", help="50 steps")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else (42 if args.seeding == "prieto" else 0)
    steps = 50 if args.smoke_test else args.steps
    torch.set_num_threads(args.threads)
    setup = (prieto_seeding if args.seeding == "prieto" else arbiter_seeding)(seed)
    accuracy = train(setup, steps)
    shown = [s for s in accuracy if s % TABLE_EVERY == 0 or s == steps]
    print(f"Prieto et al.'s StableMax run, {args.seeding}'s seeding, seed {seed}:\n")
    print("| step | " + " | ".join(f"{s:,}" for s in shown) + " |")
    print("|---|" + "---:|" * len(shown))
    print("| validation accuracy | " + " | ".join(f"{accuracy[s]:.3f}" for s in shown) + " |")
    for goal in (0.5, 0.9):
        first = next((s for s, a in accuracy.items() if a >= goal), None)
        print(f"\nFirst evaluation at {goal:.0%}: " + (f"step {first:,}" if first else "none"))


if __name__ == "__main__":
    main()
