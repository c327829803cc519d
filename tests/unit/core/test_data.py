"""The training data: the modular table and its split, batch order and resume, token files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from arbiter.config.schema import OPERATIONS, Config
from arbiter.core.data import (
    _SPLIT,
    EVAL_BATCHES,
    ModularTask,
    TokenTask,
    _generator,
    make_task,
    modular_table,
)
from arbiter.errors import UserError

# The operations as Python arithmetic on integers (x = a, y = b).
PYTHON_OPS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * pow(b, -1, p)) % p,
    "x^2+y^2": lambda a, b, p: (a**2 + b**2) % p,
    "x^3+xy": lambda a, b, p: (a**3 + a * b) % p,
    "x^2+xy+y^2": lambda a, b, p: (a**2 + a * b + b**2) % p,
}


def modular(
    operation: str = "add",
    modulus: int = 11,
    train_fraction: float = 0.5,
    seed: int = 0,
    batch_size: int | str = 8,
    split: str = "random",
    epoch_batches: bool = False,
) -> Config:
    return Config.model_validate(
        {
            "data": {
                "operation": operation,
                "modulus": modulus,
                "train_fraction": train_fraction,
                "split": split,
                "epoch_batches": epoch_batches,
            },
            "training": {"seed": seed, "batch_size": batch_size},
        }
    )


def tokens(path: Path, seq_len: int = 8, vocab: int = 2000, batch_size: int = 4) -> Config:
    return Config.model_validate(
        {
            "data": {"task": "tokens", "path": str(path)},
            "model": {"vocab_size": vocab},
            "training": {"seq_len": seq_len, "batch_size": batch_size, "seed": 3},
        }
    )


def pairs(batches) -> list[tuple[int, int]]:
    """The (a, b) of every example in some modular batches, in order."""
    return [(int(row[0]), int(row[2])) for x, _ in batches for row in x]


def roundtrip(state: dict) -> dict:
    """A state dict as a checkpoint would give it back."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# --- the modular task ---------------------------------------------------------------------


def test_python_ops_cover_every_configured_operation():
    assert set(PYTHON_OPS) == set(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_entry_of_the_table_is_right(operation):
    p = 13
    task = ModularTask(modular(operation, modulus=p))
    examples = 0
    for x, y in [batch for batches in task.eval_splits().values() for batch in batches]:
        assert x.dtype == y.dtype == torch.int64
        assert (x[:, 1] == p).all() and (x[:, 3] == p + 1).all()  # op and "=" tokens
        assert y.shape == (len(x), 1)  # only the answer is scored
        for (a, _, b, _), c in zip(x.tolist(), y[:, 0].tolist(), strict=True):
            assert c == PYTHON_OPS[operation](a, b, p), (a, b)
            examples += 1
    assert examples == p * (p - 1 if operation == "div" else p)
    assert (task.vocab_size, task.seq_len) == (p + 2, 4)


def test_without_the_operation_token_examples_are_a_b_equals():
    """Nanda et al.'s format: [a, b, =] with "=" the token after the residues (vocabulary p + 1);
    the same pairs, split and answers as [a, op, b, =]."""
    p = 11
    with_op = ModularTask(modular(modulus=p))
    config = modular(modulus=p).model_copy(deep=True)
    config.data.operation_token = False
    without = ModularTask(config)
    assert (without.vocab_size, without.seq_len) == (p + 1, 3)
    assert (config.vocab_size(), config.seq_len()) == (p + 1, 3)
    assert (without.x[:, 2] == p).all()
    assert torch.equal(without.x[:, :2], with_op.x[:, [0, 2]])
    assert torch.equal(without.y, with_op.y)
    assert torch.equal(without.train_indices, with_op.train_indices)


def test_div_inverts_mul_and_skips_zero():
    p = 17
    a, b, c = modular_table("div", p)
    assert len(a) == p * (p - 1) and int(b.min()) == 1
    assert ((c * b) % p == a).all()


def test_split_sizes_are_disjoint_and_cover_all_pairs():
    task = ModularTask(modular("mul", modulus=11, train_fraction=0.3))
    split = task.eval_splits()
    train, val = pairs(split["train"]), pairs(split["val"])
    assert len(train) == round(0.3 * 121) == 36 and len(val) == 121 - 36
    assert not set(train) & set(val)
    assert set(train) | set(val) == {(a, b) for a in range(11) for b in range(11)}


def test_split_is_seeded():
    def train_pairs(seed: int) -> list[tuple[int, int]]:
        return pairs(ModularTask(modular(seed=seed)).eval_splits()["train"])

    assert train_pairs(1) == train_pairs(1)
    assert set(train_pairs(1)) != set(train_pairs(2))


def split_pairs(config: Config) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    split = ModularTask(config).eval_splits()
    return pairs(split["train"]), pairs(split["val"])


@pytest.mark.parametrize("operation", OPERATIONS)
def test_table_size_is_the_table(operation):
    for p in (2, 7, 13):
        data = modular(operation, modulus=p).data
        assert data.table_size() == len(modular_table(operation, p)[0])
        assert data.train_size() == round(0.5 * data.table_size())


def test_random_split_is_unchanged():
    # Existing runs keep their split: the first n_train of one permutation of the split stream.
    task = ModularTask(modular(modulus=11, train_fraction=0.3, seed=5))
    shuffled = torch.randperm(121, generator=_generator(5, _SPLIT))
    assert torch.equal(task.train_indices, shuffled[:36])
    assert torch.equal(task.val_indices, shuffled[36:])


def test_random_split_leaks_mirrors_into_validation():
    train, val = split_pairs(modular(modulus=11))
    assert {(b, a) for a, b in train} & set(val)


@pytest.mark.parametrize(
    ("operation", "modulus", "fraction"),
    [("add", 11, 0.5), ("mul", 11, 0.3), ("div", 13, 0.6), ("sub", 8, 0.9), ("add", 3, 0.85)],
)
def test_no_mirror_keeps_mirrors_together(operation, modulus, fraction):
    # 8 of the 9 pairs mod 3 (3 diagonal pairs, 3 mirrored pairs): for some seeds every diagonal
    # pair is taken before the last one is needed, and a mirrored pair replaces one of them.
    a, b, _ = modular_table(operation, modulus)
    table = set(zip(a.tolist(), b.tolist(), strict=True))
    for seed in range(10):
        config = modular(operation, modulus, fraction, seed, split="no_mirror")
        train, val = split_pairs(config)
        assert len(train) == len(set(train)) == config.data.train_size()  # exactly, every seed
        assert not set(train) & set(val) and set(train) | set(val) == table
        assert not {(b, a) for a, b in train} & set(val)
        assert len(val) == len(table) - len(train)


def test_no_mirror_split_is_seeded_and_differs_from_random():
    def train(seed: int, split: str = "no_mirror") -> list[tuple[int, int]]:
        return split_pairs(modular(modulus=11, seed=seed, split=split))[0]

    assert train(1) == train(1)
    assert set(train(1)) != set(train(2))
    assert set(train(1)) != set(train(1, "random"))


@pytest.mark.parametrize("split", ["random", "no_mirror"])
def test_full_batch_is_the_whole_training_set_every_step(split):
    config = modular(modulus=11, train_fraction=0.4, batch_size="full", split=split)
    assert config.training.batch_size == config.data.train_size() == 48
    task = ModularTask(config)
    train = pairs(task.eval_splits()["train"])
    assert len(train) == 48
    batches = [pairs([task.train_batch()]) for _ in range(3)]
    for batch in batches:
        assert len(batch) == len(set(batch)) == 48 and set(batch) == set(train)
    assert batches[0] != batches[1]  # each step a new order of the same examples


def test_eval_is_chunked():
    task = ModularTask(modular(modulus=97, train_fraction=0.9))  # 8468 training pairs
    sizes = [len(x) for x, _ in task.eval_splits()["train"]]
    assert sizes == [8192, 8468 - 8192]


def test_an_epoch_has_no_repeats_and_covers_the_training_set():
    task = ModularTask(modular(modulus=8, batch_size=8))  # 32 training pairs, 4 batches an epoch
    train = set(pairs(task.eval_splits()["train"]))
    for _ in range(3):
        epoch = pairs([task.train_batch() for _ in range(4)])
        assert len(epoch) == len(set(epoch)) == 32 and set(epoch) == train


def test_a_batch_crossing_epochs_takes_the_rest_then_a_new_epoch():
    task = ModularTask(modular(modulus=8, batch_size=5))  # 32 pairs: batch 7 crosses epochs
    train = set(pairs(task.eval_splits()["train"]))
    stream = pairs([task.train_batch() for _ in range(13)])  # 65 examples
    assert set(stream[:32]) == set(stream[32:64]) == train
    assert stream[:32] != stream[32:64]  # a new permutation each epoch
    assert all(len(x) == 5 for x, _ in [task.train_batch() for _ in range(5)])


def test_epoch_batches_end_each_epoch_with_the_rest_as_a_smaller_batch():
    task = ModularTask(modular(modulus=8, batch_size=5, epoch_batches=True))  # 32 pairs
    train = set(pairs(task.eval_splits()["train"]))
    batches = [task.train_batch() for _ in range(14)]  # two epochs of 7 batches
    assert [len(x) for x, _ in batches] == [5, 5, 5, 5, 5, 5, 2] * 2
    first, second = pairs(batches[:7]), pairs(batches[7:])
    assert set(first) == set(second) == train and first != second
    resumed = ModularTask(modular(modulus=8, batch_size=5, epoch_batches=True))
    resumed.load_state_dict(roundtrip(task.state_dict()))  # the cursor keeps the epoch's place
    for (x1, _), (x2, _) in zip(_batches(task, 9), _batches(resumed, 9), strict=True):
        assert torch.equal(x1, x2)


def test_full_batch_when_batch_size_exceeds_the_training_set():
    task = ModularTask(modular(modulus=8, batch_size=1000))
    train = set(pairs(task.eval_splits()["train"]))
    first, second = pairs([task.train_batch()]), pairs([task.train_batch()])
    assert len(first) == len(second) == 32
    assert set(first) == set(second) == train and first != second


def test_batches_are_seeded_and_leave_the_global_rng_alone():
    global_state = torch.get_rng_state()
    a = [x for x, _ in _batches(ModularTask(modular(seed=4)), 3)]
    b = [x for x, _ in _batches(ModularTask(modular(seed=4)), 3)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert torch.equal(torch.get_rng_state(), global_state)


def _batches(task, k: int) -> list:
    return [task.train_batch() for _ in range(k)]


@pytest.mark.parametrize("batch_size", [5, 1000])
def test_resume_continues_exactly(batch_size):
    config = modular(modulus=8, batch_size=batch_size)
    uninterrupted = ModularTask(config)
    _batches(uninterrupted, 9)  # into the second epoch for batch_size 5
    resumed = ModularTask(config)
    resumed.load_state_dict(roundtrip(uninterrupted.state_dict()))
    for (x1, y1), (x2, y2) in zip(_batches(uninterrupted, 10), _batches(resumed, 10), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_resume_with_another_training_set_is_refused():
    state = ModularTask(modular(modulus=8)).state_dict()
    with pytest.raises(UserError, match="32 training pairs"):
        ModularTask(modular(modulus=9)).load_state_dict(state)


def test_a_fraction_leaving_an_empty_split_is_an_error():
    with pytest.raises(UserError, match="data.train_fraction"):
        ModularTask(modular(modulus=2, train_fraction=0.05))


# --- token files ------------------------------------------------------------------------------


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    """train.bin holds 0..199 (a token is its own offset); val.bin holds 1000..1059."""
    np.arange(200, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(1000, 1060, dtype=np.uint16).tofile(tmp_path / "val.bin")
    return tmp_path


def test_make_task_picks_the_task(token_dir):
    assert isinstance(make_task(modular()), ModularTask)
    assert isinstance(make_task(tokens(token_dir)), TokenTask)


def test_token_windows_shift_by_one_and_stay_in_bounds(token_dir):
    task = TokenTask(tokens(token_dir, seq_len=8, batch_size=4))
    assert (task.vocab_size, task.seq_len) == (2000, 8)
    starts = set()
    for _ in range(20):
        x, y = task.train_batch()
        assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)  # consecutive tokens: y is x shifted by one
        for start in x[:, 0].tolist():
            assert torch.equal(x[x[:, 0] == start][0], torch.arange(start, start + 8))
        starts.update(x[:, 0].tolist())
    assert min(starts) >= 0 and max(starts) <= 200 - 9


def test_token_windows_reach_the_last_token(tmp_path):
    np.arange(12, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(12, dtype=np.uint16).tofile(tmp_path / "val.bin")
    task = TokenTask(tokens(tmp_path, seq_len=8, batch_size=4))
    starts = {s for _ in range(50) for s in task.train_batch()[0][:, 0].tolist()}
    assert starts == {0, 1, 2, 3}  # 12 tokens hold windows of 9 at offsets 0..3


def test_token_resume_continues_exactly(token_dir):
    uninterrupted = TokenTask(tokens(token_dir))
    _batches(uninterrupted, 3)
    resumed = TokenTask(tokens(token_dir))
    resumed.load_state_dict(roundtrip(uninterrupted.state_dict()))
    for (x1, _), (x2, _) in zip(_batches(uninterrupted, 5), _batches(resumed, 5), strict=True):
        assert torch.equal(x1, x2)


def test_token_eval_batches_are_fixed(token_dir):
    task = TokenTask(tokens(token_dir, batch_size=4))
    first = task.eval_splits()
    task.train_batch()  # training draws must not move the evaluation windows
    second = TokenTask(tokens(token_dir, batch_size=4)).eval_splits()
    for name in ("train", "val"):
        a, b = list(first[name]), list(second[name])
        assert len(a) == EVAL_BATCHES and all(x.shape == (4, 8) for x, _ in a)
        for (x1, y1), (x2, y2), (x3, _) in zip(a, b, first[name], strict=True):
            # the same windows from a fresh task and from iterating the same splits again
            assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(x1, x3)
    assert all(int(x.min()) >= 1000 for x, _ in first["val"])  # val windows come from val.bin


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: (d / "train.bin").unlink(), "train.bin: not found; make it with"),
        (lambda d: (d / "val.bin").unlink(), "val.bin: not found"),
        (lambda d: np.arange(9, dtype=np.uint16).tofile(d / "val.bin"), "9 tokens, fewer than"),
        (lambda d: (d / "val.bin").write_bytes(b"abc"), "3 bytes is not a whole number"),
        (
            lambda d: np.array([5, 2000, 7] * 10, dtype=np.uint16).tofile(d / "val.bin"),
            "token id 2000 is outside the vocabulary",
        ),
    ],
)
def test_unusable_token_files_are_one_line_errors(token_dir, setup, expected):
    setup(token_dir)
    with pytest.raises(UserError) as info:
        TokenTask(tokens(token_dir, seq_len=8, vocab=2000))
    message = str(info.value)
    assert expected in message and str(token_dir) in message and "\n" not in message


def test_a_missing_token_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="nowhere: folder not found"):
        TokenTask(tokens(tmp_path / "nowhere"))
