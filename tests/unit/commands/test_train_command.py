"""`arbiter train` and `arbiter prepare-text` through the command line."""

from __future__ import annotations

import pytest

from arbiter.commands.exit_codes import ExitCode
from arbiter.core.metrics import read_metrics

TOKENS_RUN = """
    [model]
    dim = 32
    n_layers = 1
    n_heads = 2
    vocab_size = 256
    [training]
    batch_size = 8
    seq_len = 32
    steps = 20
    warmup_steps = 2
    eval_interval = 10
    [data]
    task = "tokens"
    path = "{path}"
    [checkpoint]
    interval = 10
    [logging]
    log_interval = 5
    enable_tensorboard = false
"""
TOKENS_PER_STEP = 8 * 32  # batch_size x seq_len


def test_prepare_text_then_train_on_tokens(cli, write, tmp_path):
    corpus = write("corpus.txt", "the quick brown fox jumps over the lazy dog. " * 200)
    code, out, err = cli("prepare-text", corpus, "--out", tmp_path / "tokens")
    assert code == 0, err
    assert "byte-level, vocab_size 256" in out
    config = write("run.toml", TOKENS_RUN.format(path=tmp_path / "tokens"))
    code, _, err = cli("train", "--config", config, "--out", tmp_path / "run")
    assert code == 0, err
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert rows[-1]["val/loss"] < rows[0]["val/loss"]  # it learns the repeated sentence
    # data-constrained accounting: tokens seen, and the epochs they make over train.bin
    unique = (tmp_path / "tokens" / "train.bin").stat().st_size // 2
    for row in rows:
        assert row["unique_tokens"] == unique
        assert row["tokens_seen"] == row["step"] * TOKENS_PER_STEP
        assert row["epochs"] == pytest.approx(row["tokens_seen"] / unique)


def test_missing_token_files_are_a_user_error(cli, write, tmp_path):
    config = write("run.toml", TOKENS_RUN.format(path=tmp_path / "absent"))
    code, _, err = cli("train", "--config", config, "--out", tmp_path / "run")
    assert code == ExitCode.USAGE
    assert "absent" in err and "prepare-text" in err and len(err.strip().splitlines()) == 1


def test_resume_without_checkpoints_is_refused(cli, write, tmp_path):
    config = write("run.toml", "[training]\nsteps = 5\nwarmup_steps = 0\n")
    code, _, err = cli("train", "--config", config, "--out", tmp_path / "empty", "--resume")
    assert code == ExitCode.USAGE and "no valid checkpoint" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--tier", "auto"], "no GPU visible"),
        (["train"], "give --config FILE or --tier"),  # no terminal for the menu under pytest
    ],
)
def test_tier_choice_without_gpu_or_terminal(cli, argv, words, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*argv)
    assert code == ExitCode.USAGE and words in err
    assert not (tmp_path / "runs").exists()


def test_tier_menu_on_a_terminal(tmp_path):
    """The seed's legacy flow: `arbiter train` on a terminal asks for a tier."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "arbiter", "train"],
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    os.write(leader, b"2\n")
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    text = output.decode(errors="replace")
    assert "[1] High VRAM tier" in text and "[2] Low VRAM tier" in text
    assert "no GPU detected" in text
    # tier 2 chosen: its fp16 precision is refused on this CPU-only machine, in one clear line
    assert process.returncode == ExitCode.USAGE and "fp16 on CPU" in text
