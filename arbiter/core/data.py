"""The training data of a run: the modular-arithmetic table, or uint16 token files.

`make_task(config)` gives the training loop a `Task`: `train_batch()` for the next (x, y) batch,
`eval_splits()` for the evaluation sets, and `state_dict()` / `load_state_dict()` for the data
cursor, so that a resumed run sees exactly the batches an uninterrupted one would have seen.
Every random draw uses a local `torch.Generator` seeded from `training.seed`, never the global
RNG, so the data order and the model's initialisation cannot disturb each other.
Token files for the tokens task are made by `arbiter.core.text.prepare_text`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arbiter.config.schema import Config
from arbiter.core.text import META_FILE, read_meta
from arbiter.errors import UserError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # torch cross_entropy's default ignore_index: positions that are not scored
EVAL_CHUNK = 8192  # most examples in one modular evaluation batch
EVAL_BATCHES = 16  # tokens task: fixed evaluation batches (of batch_size windows) per split
_HINT = "make it with `arbiter prepare-text FILE --out {}`"

# Independent random streams drawn from one seed: the split, the batch order, the eval windows.
_SPLIT, _BATCHES, _EVAL = 0, 1, 2

Batch = tuple[torch.Tensor, torch.Tensor]


def _generator(seed: int, stream: int) -> torch.Generator:
    """A local generator for one purpose; distinct streams of one seed never share a seed."""
    return torch.Generator().manual_seed((seed * 1000 + stream) % 2**63)


class Task(ABC):
    """What the training loop needs from a data source; batches are CPU int64 (B, T) tensors."""

    vocab_size: int
    seq_len: int
    # True: only the last position is scored and y is (B, 1), so the model computes the last
    # position's output alone (its final block does a quarter of the work on [a, op, b, =]).
    answer_only: bool = False
    # The distinct training tokens (a tokens task's train.bin), for data-constrained accounting:
    # a run reports the tokens it has seen and how many epochs over these they make.
    unique_train_tokens: int | None = None

    @abstractmethod
    def train_batch(self) -> Batch:
        """The next training batch (x, y): y is (B, T), IGNORE_INDEX where nothing is scored,
        or (B, 1), the last position's target, when `answer_only`."""

    @abstractmethod
    def eval_splits(self) -> dict[str, Iterable[Batch]]:
        """{"train": batches, "val": batches}: the same examples on every call."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The data cursor as tensors and ints (safe for `torch.load(weights_only=True)`)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a cursor that `state_dict` returned."""


def make_task(config: Config) -> Task:
    """The task `config.data.task` names."""
    return ModularTask(config) if config.data.task == "modular" else TokenTask(config)


def modular_table(
    operation: str, p: int, nonzero_b: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pair (a, b) of the task, a-major, and its answer c = a op b mod p (int64 vectors);
    b from 1 with `nonzero_b` (division needs b != 0 anyway)."""
    b_values = torch.arange(1 if operation == "div" or nonzero_b else 0, p)
    a = torch.arange(p).repeat_interleave(len(b_values))
    b = b_values.repeat(p)
    # Reduce each product at once so intermediate values stay below p**2.
    aa, bb, ab = a * a % p, b * b % p, a * b % p
    formulas = {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: ab,
        # Fermat: b^(p-2) is the inverse of b when p is prime (the config guarantees it).
        "div": lambda: a * torch.tensor([pow(v, p - 2, p) for v in range(p)])[b],
        "x^2+y^2": lambda: aa + bb,
        "x^3+xy": lambda: aa * a + ab,
        "x^2+xy+y^2": lambda: aa + ab + bb,
    }
    if operation not in formulas:
        raise ValueError(f"unknown modular operation {operation!r}")
    c = formulas[operation]()
    return a, b, c % p  # torch's % takes the divisor's sign: sub lands in 0..p-1


class ModularTask(Task):
    """All pairs of `a op b mod p` as [a, op, b, =] (or [a, b, =]) -> c, split once by the seed
    (`data.split`)."""

    answer_only = True

    def __init__(self, config: Config) -> None:
        data, p, seed = config.data, config.data.modulus, config.training.seed
        self.vocab_size, self.seq_len = config.vocab_size(), config.seq_len()
        self.batch_size = config.training.batch_size
        self.epoch_batches = data.epoch_batches
        a, b, c = modular_table(data.operation, p, data.nonzero_b)
        # tokens after the residues: the operation's (p), unless left out, then "=" (the last)
        eq_token = torch.full_like(a, self.vocab_size - 1)
        operands = [a, torch.full_like(a, p), b] if data.operation_token else [a, b]
        self.x = torch.stack([*operands, eq_token], dim=1)
        self.y = c.unsqueeze(1)  # the answer, predicted from the "=" token

        n = len(a)
        n_train = data.train_size()  # the count batch_size = "full" resolved to
        if not 0 < n_train < n:
            raise UserError(
                f"data.train_fraction = {data.train_fraction} leaves an empty split of the {n} "
                f"pairs mod {p}; allowed: a fraction giving 1..{n - 1} training pairs"
            )
        split_generator = _generator(seed, _SPLIT)
        if data.split == "no_mirror":
            self.train_indices, self.val_indices = _split_no_mirror(
                a, b, p, n_train, split_generator
            )
        else:
            shuffled = torch.randperm(n, generator=split_generator)
            self.train_indices, self.val_indices = shuffled[:n_train], shuffled[n_train:]

        # The cursor: `order` is this epoch's permutation of positions in train_indices.
        self._generator = _generator(seed, _BATCHES)
        self._epoch = 0
        self._order = self._permutation()
        self._position = 0

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(len(self.train_indices), generator=self._generator)

    def train_batch(self) -> Batch:
        n = len(self.train_indices)
        # batch_size >= n: every batch is one whole epoch (full-batch training).
        need = min(self.batch_size, n)
        if self.epoch_batches and self._position < n:
            need = min(need, n - self._position)  # the epoch's last batch may be smaller
        parts = []
        while need:
            if self._position == n:  # the epoch is used up: the rest comes from a new one
                self._epoch += 1
                self._order = self._permutation()
                self._position = 0
            part = self._order[self._position : self._position + need]
            self._position += len(part)
            need -= len(part)
            parts.append(part)
        rows = self.train_indices[torch.cat(parts)]
        return self.x[rows], self.y[rows]

    def eval_splits(self) -> dict[str, Iterable[Batch]]:
        return {"train": self._chunks(self.train_indices), "val": self._chunks(self.val_indices)}

    def _chunks(self, rows: torch.Tensor) -> list[Batch]:
        return [(self.x[part], self.y[part]) for part in rows.split(EVAL_CHUNK)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self._generator.get_state(),
            "order": self._order.clone(),
            "position": self._position,
            "epoch": self._epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state["order"]
        if order.shape != (len(self.train_indices),):
            raise UserError(
                f"the saved data cursor is for {order.numel()} training pairs; this config has "
                f"{len(self.train_indices)} (the [data] settings changed)"
            )
        self._generator.set_state(state["generator"])
        self._order = order.clone().long()
        self._position = int(state["position"])
        self._epoch = int(state["epoch"])


def _split_no_mirror(
    a: torch.Tensor, b: torch.Tensor, p: int, n_train: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (train, val) with exactly `n_train` training rows, where the rows (a, b) and
    (b, a) of the table are always on the same side.

    Rows are grouped by the unordered pair {a, b}: a pair of two rows, or a group of one for
    (a, a) (and, for div, for (0, b), whose mirror (b, 0) is not in the table). The groups are
    shuffled and taken in that order whenever they fit, which is whole groups until one row is
    left to fill, then the next group of one. Should none be left (every group of one already
    taken), the last group of one taken goes back to validation and the two-row group that did
    not fit comes in. The count is thus always exactly `n_train`, the number batch_size = "full"
    resolves to, and the split depends only on the table and the generator.
    """
    unordered = torch.minimum(a, b) * p + torch.maximum(a, b)
    _, group = torch.unique(unordered, return_inverse=True)
    sizes = torch.bincount(group)
    order = torch.randperm(len(sizes), generator=generator)  # groups in the order taken
    filled = sizes[order].cumsum(0)
    whole = int((filled <= n_train).sum())  # the longest run of groups that fits
    taken = order[:whole]
    if whole == 0 or int(filled[whole - 1]) < n_train:  # one row short: the next group is two
        rest = order[whole:]
        singles = rest[sizes[rest] == 1]
        if len(singles):
            taken = torch.cat([taken, singles[:1]])
        else:
            last_single = int(torch.nonzero(sizes[taken] == 1).max())
            kept = torch.cat([taken[:last_single], taken[last_single + 1 :]])
            taken = torch.cat([kept, rest[:1]])
    in_train = torch.zeros(len(sizes), dtype=torch.bool)
    in_train[taken] = True
    # Rows in the shuffled order of their groups (a group's rows in table order).
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    rows = torch.argsort(rank[group], stable=True)
    train = in_train[group[rows]]
    return rows[train], rows[~train]


def _offsets(
    tokens: np.ndarray, seq_len: int, shape: tuple[int, ...], rng: torch.Generator
) -> torch.Tensor:
    """Random window starts; the last possible window ends at the file's last token."""
    return torch.randint(0, len(tokens) - seq_len, shape, generator=rng)


def _read_windows(tokens: np.ndarray, offsets: torch.Tensor, seq_len: int) -> Batch:
    """x = window[:-1], y = window[1:] for the seq_len + 1 tokens at each offset."""
    windows = np.stack([tokens[o : o + seq_len + 1] for o in offsets.tolist()])
    block = torch.from_numpy(windows.astype(np.int64))
    return block[:, :-1].contiguous(), block[:, 1:].contiguous()


class _FixedWindows:
    """Re-iterable evaluation batches: the offsets are fixed, tokens are read when iterated."""

    def __init__(self, tokens: np.ndarray, offsets: torch.Tensor, seq_len: int) -> None:
        self.tokens, self.offsets, self.seq_len = tokens, offsets, seq_len

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Batch]:
        for row in self.offsets:
            yield _read_windows(self.tokens, row, self.seq_len)


def check_vocabulary(folder: Path, vocab_size: int) -> None:
    """The model's vocabulary must be the one the token files were made with (their
    `meta.json`, when `arbiter prepare-text` wrote them): one line naming both otherwise."""
    meta = read_meta(folder)
    if meta is None or meta.get("vocab_size") == vocab_size:
        return
    made = meta.get("vocab_size")
    raise UserError(
        f"model.vocab_size = {vocab_size}: {folder / META_FILE} says its tokens come from a "
        f"vocabulary of {made} ({meta.get('tokenizer', 'bytes')}); set model.vocab_size = "
        f"{made}, or make the tokens again with `arbiter prepare-text ... --vocab-size "
        f"{vocab_size}`"
    )


class TokenTask(Task):
    """Random windows of `train.bin`; fixed windows of both files for evaluation."""

    def __init__(self, config: Config) -> None:
        self.vocab_size, self.seq_len = config.vocab_size(), config.seq_len()
        self.batch_size = config.training.batch_size
        folder = Path(config.data.path or "")
        if not folder.is_dir():
            raise UserError(f"{folder}: folder not found; {_HINT.format(folder)}")
        check_vocabulary(folder, self.vocab_size)
        self.train_tokens = self._open(folder / "train.bin")
        self.val_tokens = self._open(folder / "val.bin")
        self.unique_train_tokens = len(self.train_tokens)
        seed = config.training.seed
        self._generator = _generator(seed, _BATCHES)
        shape = (EVAL_BATCHES, self.batch_size)
        self._eval_offsets = {
            name: _offsets(tokens, self.seq_len, shape, _generator(seed, _EVAL))
            for name, tokens in (("train", self.train_tokens), ("val", self.val_tokens))
        }

    def _open(self, path: Path) -> np.ndarray:
        """Map a token file read-only, after checking it is usable for this config."""
        if not path.is_file():
            raise UserError(f"{path}: not found; {_HINT.format(path.parent)}")
        size = path.stat().st_size
        if size % 2:
            raise UserError(f"{path}: {size} bytes is not a whole number of uint16 tokens")
        need = self.seq_len + 2
        if size // 2 < need:
            raise UserError(
                f"{path}: {size // 2} tokens, fewer than seq_len + 2 = {need} "
                f"(training.seq_len = {self.seq_len})"
            )
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
        top = int(tokens.max())
        if top >= self.vocab_size:
            raise UserError(
                f"{path}: token id {top} is outside the vocabulary; "
                f"model.vocab_size = {self.vocab_size} allows ids 0..{self.vocab_size - 1}"
            )
        return tokens

    def train_batch(self) -> Batch:
        offsets = _offsets(self.train_tokens, self.seq_len, (self.batch_size,), self._generator)
        return _read_windows(self.train_tokens, offsets, self.seq_len)

    def eval_splits(self) -> dict[str, Iterable[Batch]]:
        return {
            "train": _FixedWindows(self.train_tokens, self._eval_offsets["train"], self.seq_len),
            "val": _FixedWindows(self.val_tokens, self._eval_offsets["val"], self.seq_len),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
