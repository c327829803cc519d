"""Text as token files (`arbiter.core.text`): byte tokens round-trip the bytes, a trained BPE
(Hugging Face tokenizers) keeps every id below its vocabulary and decodes back to the text, the
result does not depend on the chunk size the files are streamed in, a tokenizer is reused with
its ids, and a run refuses token files made with another vocabulary."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
from tokenizers import Tokenizer

from arbiter.config.schema import Config
from arbiter.core import text as text_module
from arbiter.core.data import TokenTask
from arbiter.core.text import prepare_text
from arbiter.errors import UserError

WORDS = [
    "the",
    "model",
    "learns",
    "a",
    "rule",
    "long",
    "after",
    "it",
    "memorised",
    "its",
    "training",
    "set:",
    "grokking",
]


def corpus(path, lines: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(lines))
    path.write_text(text + "\n")
    return path.read_bytes()


def ids(folder) -> np.ndarray:
    return np.concatenate(
        [np.fromfile(folder / f"{part}.bin", dtype=np.uint16) for part in ("train", "val")]
    )


def tokens_config(folder, vocab: int) -> Config:
    return Config.model_validate(
        {
            "data": {"task": "tokens", "path": str(folder)},
            "model": {"vocab_size": vocab},
            "training": {"seq_len": 8, "batch_size": 4},
        }
    )


def test_byte_tokens_round_trip_the_bytes_of_several_files(tmp_path):
    first = ("Grokking: generalisation long after overfitting. é\n" * 30).encode()
    (tmp_path / "a.txt").write_bytes(first)
    second = corpus(tmp_path / "b.txt", 20)
    out = tmp_path / "made" / "tokens"
    meta = prepare_text([tmp_path / "a.txt", tmp_path / "b.txt"], out, val_fraction=0.2)

    both = first + second
    assert bytes(ids(out).astype(np.uint8)) == both
    assert meta["val_tokens"] == len(both) - int(len(both) * 0.8)
    assert meta["vocab_size"] == 256 and meta["tokenizer"] == "bytes"
    assert meta["bytes"] == len(both) and meta["bytes_per_token"] == 1.0
    assert [s["sha256"] for s in meta["sources"]] == [
        hashlib.sha256(first).hexdigest(),
        hashlib.sha256(second).hexdigest(),
    ]
    assert json.loads((out / "meta.json").read_text()) == meta
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_a_trained_bpe_keeps_ids_below_its_vocabulary_and_decodes_to_the_text(tmp_path):
    data = corpus(tmp_path / "c.txt", 3000)
    out = tmp_path / "bpe"
    meta = prepare_text([tmp_path / "c.txt"], out, vocab_size=300)
    assert meta["tokenizer"] == "bpe" and meta["vocab_size"] == 300
    assert 256 < meta["tokenizer_vocab"] <= 300
    assert meta["bytes_per_token"] > 2  # merges happened: fewer tokens than bytes
    everything = ids(out)
    assert int(everything.max()) < 300
    assert meta["train_tokens"] + meta["val_tokens"] == len(everything)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.decode(everything.tolist()) == data.decode()
    x, _ = TokenTask(tokens_config(out, 300)).train_batch()  # a run reads them back
    assert int(x.max()) < 300


def test_the_tokens_do_not_depend_on_the_chunk_size(tmp_path, monkeypatch):
    corpus(tmp_path / "c.txt", 500)
    prepare_text([tmp_path / "c.txt"], tmp_path / "big", vocab_size=300)
    monkeypatch.setattr(text_module, "CHUNK_BYTES", 97)  # hundreds of chunks, most mid-line
    prepare_text([tmp_path / "c.txt"], tmp_path / "small", vocab_size=300)
    assert np.array_equal(ids(tmp_path / "big"), ids(tmp_path / "small"))


def test_a_tokenizer_is_reused_with_its_ids(tmp_path):
    corpus(tmp_path / "train.txt", 2000)
    corpus(tmp_path / "later.txt", 200, seed=1)
    first = prepare_text([tmp_path / "train.txt"], tmp_path / "first", vocab_size=300)
    again = prepare_text(
        [tmp_path / "later.txt"], tmp_path / "later", tokenizer=tmp_path / "first/tokenizer.json"
    )
    assert again["vocab_size"] == first["tokenizer_vocab"]  # the reused tokenizer's size
    tokenizer = Tokenizer.from_file(str(tmp_path / "first/tokenizer.json"))
    later = ids(tmp_path / "later")
    assert int(later.max()) < first["tokenizer_vocab"]
    assert tokenizer.decode(later.tolist()) == (tmp_path / "later.txt").read_text()


def test_a_run_refuses_tokens_made_with_another_vocabulary(tmp_path):
    corpus(tmp_path / "c.txt", 300)
    prepare_text([tmp_path / "c.txt"], tmp_path / "tokens")  # bytes: 256
    with pytest.raises(UserError) as refused:
        TokenTask(tokens_config(tmp_path / "tokens", 8192))
    message = str(refused.value)
    assert "model.vocab_size = 8192" in message and "vocabulary of 256 (bytes)" in message
    assert "--vocab-size 8192" in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"), [(b"", "empty"), (b"a", "too short to split"), (None, "cannot read")]
)
def test_unusable_sources_are_refused_and_nothing_is_written(tmp_path, content, expected):
    source = tmp_path / "in.txt"
    if content is not None:
        source.write_bytes(content)
    with pytest.raises(UserError, match=expected):
        prepare_text([source], tmp_path / "out")
    assert not (tmp_path / "out").exists()
