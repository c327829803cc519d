"""`arbiter prepare-text`: a text file as the uint16 token files a tokens run trains on."""

from __future__ import annotations

from pathlib import Path

from arbiter.commands.exit_codes import ExitCode


def prepare_text(file: Path, out: Path, val_fraction: float = 0.1) -> ExitCode:
    from arbiter.core.data import prepare_text as write_tokens

    meta = write_tokens(file, out, val_fraction)
    print(
        f"{out}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} validation "
        f"tokens (byte-level, vocab_size {meta['vocab_size']})"
    )
    return ExitCode.DONE
