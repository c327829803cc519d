"""`arbiter prepare-text`: text files as the uint16 token files a tokens run trains on, byte
tokens or a byte-level BPE trained on the text (arbiter.core.text), with a progress bar."""

from __future__ import annotations

from pathlib import Path

from arbiter.commands.exit_codes import ExitCode


def prepare_text(
    files: list[Path],
    out: Path,
    val_fraction: float = 0.1,
    vocab_size: int = 256,
    tokenizer: str | None = None,
) -> ExitCode:
    """`tokenizer`: "bytes", a tokenizer.json to reuse, or None (bytes unless `vocab_size` >
    256, which trains a BPE of that size)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from arbiter.core.text import BYTE_VOCAB, check_sources
    from arbiter.core.text import prepare_text as write_tokens
    from arbiter.errors import UserError

    if tokenizer == "bytes" and vocab_size != BYTE_VOCAB:
        raise UserError(f"--tokenizer bytes: its vocabulary is 256, not --vocab-size {vocab_size}")
    existing = Path(tokenizer) if tokenizer not in (None, "bytes") else None
    if existing is not None and not existing.is_file():
        raise UserError(f"--tokenizer {existing}: file not found (a tokenizer.json, or bytes)")
    total = sum(check_sources(files, val_fraction))  # before the bar: a mistake stays one line
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    console = Console(stderr=True)  # the bar on stderr, shown on a terminal only
    with Progress(
        *columns,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        passes = 2 if existing is None and vocab_size > BYTE_VOCAB else 1
        task = bar.add_task("reading", total=total * passes)
        offset = [0, 0]  # bytes of the passes before this one, the last count seen

        def advance(done: int) -> None:
            if done < offset[1]:  # a new pass began
                offset[0] += offset[1]
            offset[1] = done
            bar.update(task, completed=offset[0] + done)

        meta = write_tokens(files, out, val_fraction, vocab_size, existing, advance)
    kind = "byte-level" if meta["tokenizer"] == "bytes" else f"BPE, {out / 'tokenizer.json'}"
    print(
        f"{out}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} validation tokens "
        f"({kind}, vocab_size {meta['vocab_size']}, {meta['bytes_per_token']} bytes per token)"
    )
    return ExitCode.DONE
