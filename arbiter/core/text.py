"""Text as the token files a tokens run trains on (`arbiter prepare-text`): `train.bin` and
`val.bin` (uint16 token ids) and `meta.json`, from one or more text files.

Tokens are bytes (a vocabulary of 256, the default) or a byte-level BPE trained on the text with
Hugging Face `tokenizers` (`vocab_size` > 256; saved as `tokenizer.json`), or an existing
tokenizer's (`tokenizer=PATH`, so that later text shares the ids). The files are read in chunks
of `CHUNK_BYTES`, never whole: a corpus of any size is tokenized in bounded memory. The last
`val_fraction` of the bytes (the files in the order given) is the validation split. Every file
is written beside its name and renamed into place at the end: a folder never holds half a set.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from arbiter.errors import UserError

BYTE_VOCAB = 256
MAX_VOCAB = 2**16  # ids are stored as uint16
CHUNK_BYTES = 1 << 20
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"


def prepare_text(
    sources: list[Path],
    out: Path,
    val_fraction: float = 0.1,
    vocab_size: int = BYTE_VOCAB,
    tokenizer: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Tokenize `sources` into `out` (see the module docstring); `progress` is called with the
    bytes read so far of each pass. Returns what `meta.json` holds."""
    sources, out = [Path(s) for s in sources], Path(out)
    sizes = check_sources(sources, val_fraction)
    total = sum(sizes)
    split = int(total * (1.0 - val_fraction))
    bpe = _tokenizer(sources, vocab_size, tokenizer, progress)
    learned = bpe.get_vocab_size() if bpe is not None else BYTE_VOCAB
    if tokenizer is not None and vocab_size == BYTE_VOCAB:
        vocab_size = learned  # the reused tokenizer's own size, unless a larger one is asked
    if not learned <= vocab_size <= MAX_VOCAB:
        raise UserError(
            f"--vocab-size {vocab_size}: the tokenizer has {learned} tokens; allowed: "
            f"{learned}..{MAX_VOCAB} (ids are stored as uint16)"
        )
    names = {"train": out / "train.bin", "val": out / "val.bin"}
    try:
        out.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            files = {k: stack.enter_context(_Atomic(p)) for k, p in names.items()}
            counts, digests = _tokenize(sources, split, bpe, files, progress)
        meta = {
            "vocab_size": vocab_size,
            "tokenizer": "bytes" if bpe is None else "bpe",
            "tokenizer_vocab": learned,
            "train_tokens": counts["train"],
            "val_tokens": counts["val"],
            "bytes": total,
            "bytes_per_token": round(total / max(sum(counts.values()), 1), 4),
            "sources": [
                {"path": str(s), "bytes": n, "sha256": d}
                for s, n, d in zip(sources, sizes, digests, strict=True)
            ],
        }
        if bpe is not None:
            bpe.save(str(out / TOKENIZER_FILE))
        _write_atomic(out / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    except OSError as exc:
        raise UserError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return meta


def read_meta(folder: Path) -> dict[str, Any] | None:
    """A token folder's `meta.json`, or None when it has none (files made by other tools)."""
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"{Path(folder) / META_FILE}: unreadable: {exc}") from None


def check_sources(sources: list[Path], val_fraction: float) -> list[int]:
    """The size of each source, once they are known readable and long enough to split."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction = {val_fraction}; allowed: between 0 and 1, exclusive")
    sizes = []
    for source in sources:
        if not source.is_file():
            what = "is a directory" if source.is_dir() else "file not found"
            raise UserError(f"{source}: cannot read: {what}")
        try:
            sizes.append(source.stat().st_size)
        except OSError as exc:
            raise UserError(f"{source}: cannot read: {exc.strerror or exc}") from None
    total = sum(sizes)
    if total == 0:
        raise UserError(f"{', '.join(map(str, sources))}: empty; there is no text to tokenize")
    if not 0 < int(total * (1.0 - val_fraction)) < total:
        raise UserError(
            f"{', '.join(map(str, sources))}: {total} bytes is too short to split into train "
            f"and val with val_fraction = {val_fraction}"
        )
    return sizes


def _tokenizer(
    sources: list[Path],
    vocab_size: int,
    existing: Path | None,
    progress: Callable[[int], None] | None,
) -> Any:
    """The BPE tokenizer to encode with: `existing` loaded, or one trained on `sources` (a
    streamed pass over them); None for byte tokens."""
    if existing is None and vocab_size == BYTE_VOCAB:
        return None
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if existing is not None:
        try:
            return Tokenizer.from_file(str(existing))
        except Exception as exc:  # the Rust side raises plain Exception
            raise UserError(f"--tokenizer {existing}: not a tokenizer file: {exc}") from None
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte has a token
        show_progress=False,
    )
    texts = (text for _, text, _ in _chunks(sources, None, progress))
    bpe.train_from_iterator(texts, trainer)
    return bpe


def _tokenize(
    sources: list[Path],
    split: int,
    bpe: Any,
    files: dict[str, Any],
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, int], list[str]]:
    """Encode every chunk into the train or val file; token counts and each source's sha256."""
    counts = {"train": 0, "val": 0}
    digests: dict[Path, Any] = {s: hashlib.sha256() for s in sources}
    for train, text, raw in _chunks(sources, split, progress, digests):
        if bpe is None:
            ids = np.frombuffer(raw, dtype=np.uint8).astype(np.uint16)
        else:
            ids = np.asarray(
                [i for e in bpe.encode_batch(text.splitlines(keepends=True)) for i in e.ids],
                dtype=np.uint16,
            )
        part = "train" if train else "val"
        ids.tofile(files[part])
        counts[part] += len(ids)
    return counts, [digests[s].hexdigest() for s in sources]


def _chunks(
    sources: list[Path],
    split: int | None,
    progress: Callable[[int], None] | None,
    digests: dict[Path, Any] | None = None,
) -> Iterator[tuple[bool, str, bytes]]:
    """(in the training split, text, bytes) of every chunk of the sources in order; no chunk
    crosses the `split` offset, and a chunk ends at a line end where it can (a word cut in two
    would tokenize differently), its remainder carried into the next one."""
    done = 0
    for source in sources:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        carry = b""
        with source.open("rb") as handle:
            while True:
                limit = CHUNK_BYTES if split is None or done >= split else split - done
                block = handle.read(min(CHUNK_BYTES, limit))
                if digests is not None:
                    digests[source].update(block)
                done += len(block)
                data, end = carry + block, not block or (split is not None and done == split)
                cut = len(data) if end else data.rfind(b"\n") + 1 or len(data)
                data, carry = data[:cut], data[cut:]
                if data:
                    train = split is None or done - len(carry) <= split
                    yield train, decoder.decode(data, final=end), data
                if progress is not None:
                    progress(done)
                if not block:
                    break


class _Atomic:
    """A file opened for binary writing beside `path`, renamed over it on a clean exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def __enter__(self):
        self.handle = open(self.temporary, "wb")  # noqa: SIM115 (closed in __exit__)
        return self.handle

    def __exit__(self, kind, *exc) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)


def _write_atomic(path: Path, payload: bytes) -> None:
    with _Atomic(path) as handle:
        handle.write(payload)
