"""`arbiter prepare-text` at scale: tokens per second and peak memory against the corpus size.

The corpus is English text on this machine (Debian's licence texts in /usr/share/common-licenses,
every file read once, then repeated to the size asked for); each size is tokenized by
`arbiter prepare-text` in a subprocess, with byte tokens and with a BPE of `--vocab-size`
trained on it, and the subprocess's peak resident memory is read from the kernel. Bounded
memory shows as a peak that does not grow with the corpus.

    python benchmarks/prepare_text.py [--mb 25 100] [--vocab-size 8192] [--smoke-test]

Prints a markdown table and appends it to docs/benchmarks.md (not with --smoke-test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Started, publish

LICENSES = Path("/usr/share/common-licenses")


def english(size: int, path: Path) -> None:
    """`size` bytes of English text at `path`: the licence texts, repeated."""
    texts = [p.read_bytes() for p in sorted(LICENSES.rglob("*")) if p.is_file()]
    if not texts:
        raise SystemExit(f"no text under {LICENSES}")
    block = b"\n".join(texts)
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: size - written]
            out.write(piece)
            written += len(piece)


def tokenize(corpus: Path, out: Path, vocab_size: int) -> tuple[float, int, dict]:
    """(seconds, peak RSS in bytes, meta.json) of one `arbiter prepare-text` subprocess."""
    command = [sys.executable, "-m", "arbiter", "prepare-text", str(corpus), "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(
        [*command, "--vocab-size", str(vocab_size)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, in KiB
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"prepare-text failed ({child.returncode}) on {corpus}")
    return seconds, usage.ru_maxrss * 1024, json.loads((out / "meta.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[25, 100])
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--smoke-test", action="store_true", help="1 and 2 MB, vocab 512")
    args = parser.parse_args()
    sizes = [1, 2] if args.smoke_test else args.mb
    vocab = 512 if args.smoke_test else args.vocab_size
    started = Started()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes:
            corpus = Path(tmp) / f"english-{mb}.txt"
            english(int(mb * 2**20), corpus)
            for tokens in (256, vocab):
                out = Path(tmp) / f"tokens-{mb}-{tokens}"
                seconds, peak, meta = tokenize(corpus, out, tokens)
                count = meta["train_tokens"] + meta["val_tokens"]
                rows.append((mb, meta["tokenizer"], tokens, count, seconds, peak, meta))
            corpus.unlink()
    table = [
        "| corpus (MiB) | tokens | vocab | token count | bytes per token | seconds | tokens/s | "
        "peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mb, kind, tokens, count, seconds, peak, meta in rows:
        table.append(
            f"| {mb:g} | {kind} | {tokens} | {count:,} | {meta['bytes_per_token']} | "
            f"{seconds:.1f} | {count / seconds:,.0f} | {peak / 2**20:,.0f} |"
        )
    publish(
        started,
        "prepare-text, tokens per second and peak memory against the corpus size",
        "English text (Debian's licence texts, repeated to size); each row one `arbiter "
        "prepare-text` subprocess (BPE rows: training the tokenizer on the corpus, then "
        "encoding it; both read the files in 1 MiB chunks). Peak RSS: that process's own "
        "(at these sizes mostly the interpreter and its imports).\n\n" + "\n".join(table),
        write=not args.smoke_test,
    )


if __name__ == "__main__":
    main()
