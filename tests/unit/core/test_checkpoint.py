"""Checkpoints: exact resume, atomic writes, pruning, fallback past damaged saves, RNG state."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import arbiter
from arbiter.config.schema import Config
from arbiter.core.checkpoint import (
    CheckpointError,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    usable_checkpoint,
)
from arbiter.errors import RunFailed

CONFIG = Config().model_dump(mode="json")


def _save(out: Path, step: int, keep: int = 5, **extra: Any) -> Path:
    return save_checkpoint(out, step, {"step": step, **extra}, CONFIG, keep)


def _steps(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def _make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    # Batches come from the global torch generator, so the RNG restore is exercised too.
    for _ in range(steps):
        x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_resumed_model_and_optimizer_continue_identically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, opt = _make()
    _train(model, opt, 3)
    scaler = torch.amp.GradScaler("cpu")
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict(),
        "step": 3,
        "cursor": {"epoch": 0, "index": 96},
        "rng": capture_rng(),
    }
    save_checkpoint(tmp_path, 3, state, CONFIG, keep=3)
    _train(model, opt, 3)  # the uninterrupted run

    torch.manual_seed(123)  # a different init and RNG position, undone by the restore
    resumed, resumed_opt = _make()
    found = latest_checkpoint(tmp_path)
    assert found is not None
    path, loaded = found
    assert path.name == "step_00000003"
    resumed.load_state_dict(loaded["model"])
    resumed_opt.load_state_dict(loaded["optimizer"])
    restore_rng(loaded["rng"])
    assert loaded["step"] == 3 and loaded["cursor"] == {"epoch": 0, "index": 96}
    assert loaded["scaler"] == scaler.state_dict()
    _train(resumed, resumed_opt, 3)

    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_layout_and_meta(tmp_path: Path) -> None:
    path = _save(tmp_path, 42, weights=torch.arange(5))
    assert path == tmp_path / "checkpoints" / "step_00000042"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "state.pt"]
    assert _steps(tmp_path) == ["step_00000042"]  # no temp dirs left
    meta = json.loads((path / "meta.json").read_text())
    data = (path / "state.pt").read_bytes()
    assert meta["step"] == 42
    assert meta["state_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["state_bytes"] == len(data)
    assert meta["config"] == CONFIG
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["versions"]["arbiter"] == arbiter.__version__
    assert meta["versions"]["python"]
    assert meta["saved_at"]
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(5))


def test_keep_prunes_oldest(tmp_path: Path) -> None:
    for step in (100, 200, 300, 400, 500):
        _save(tmp_path, step, keep=2)
    assert _steps(tmp_path) == ["step_00000400", "step_00000500"]


def test_milestones_are_kept_beyond_keep(tmp_path: Path) -> None:
    for step in range(100, 1001, 100):
        save_checkpoint(tmp_path, step, {"step": step}, CONFIG, keep=2, milestone_interval=300)
    # the newest two, and every multiple of 300 (which do not count towards keep)
    assert _steps(tmp_path) == [f"step_{s:08d}" for s in (300, 600, 800, 900, 1000)]


def test_invalid_checkpoints_do_not_count_towards_keep(tmp_path: Path) -> None:
    for step in (100, 200, 300):
        _save(tmp_path, step)
    (tmp_path / "checkpoints" / "step_00000300" / "meta.json").unlink()
    _save(tmp_path, 400, keep=2)
    # 400 and 200 are the two newest valid ones; the broken 300 between them is not counted.
    assert _steps(tmp_path) == ["step_00000200", "step_00000300", "step_00000400"]


def test_stale_temp_dirs_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / "checkpoints" / ".tmp-step_00000050-99999"
    stale.mkdir(parents=True)
    (stale / "state.pt").write_bytes(b"half")
    _save(tmp_path, 100)
    assert _steps(tmp_path) == ["step_00000100"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (lambda p: _truncate(p / "state.pt"), "size mismatch"),
    "flipped": (lambda p: _flip(p / "state.pt"), "sha256 mismatch"),
    "no meta": (lambda p: (p / "meta.json").unlink(), "meta.json is missing"),
    "bad meta": (lambda p: (p / "meta.json").write_text("{not json"), "meta.json is unreadable"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_latest_falls_back_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    _save(tmp_path, 100)
    newest = _save(tmp_path, 200)
    damage, reason = DAMAGE[kind]
    damage(newest)
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(newest)
    with caplog.at_level(logging.WARNING, logger="arbiter.core.checkpoint"):
        found = latest_checkpoint(tmp_path)
    assert found is not None
    assert found[0].name == "step_00000100" and found[1]["step"] == 100
    message = caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.WARNING
    assert f"checkpoint {newest} is corrupt" in message
    assert reason in message and "falling back to step_00000100" in message


def test_nothing_valid_gives_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoints").mkdir()
    assert latest_checkpoint(tmp_path) is None
    for step in (100, 200):
        _flip(_save(tmp_path, step) / "state.pt")
    with caplog.at_level(logging.WARNING, logger="arbiter.core.checkpoint"):
        assert latest_checkpoint(tmp_path) is None
    assert len(caplog.records) == 2


def _tune_folders(trial: Path, steps: list[int]) -> list[Path]:
    """Checkpoints laid out as Ray Tune keeps a trial's: trial/checkpoint_NNNNNN/."""
    folders = []
    for index, step in enumerate(steps):
        saved = _save(trial / "scratch", step)
        folders.append(saved.rename(trial / f"checkpoint_{index:06d}"))
    return folders


def test_a_corrupt_tune_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, third = _tune_folders(tmp_path, [100, 200, 300])
    assert usable_checkpoint(third)[0] == third  # valid: used as it is
    _truncate(third / "state.pt")
    with caplog.at_level(logging.WARNING, logger="arbiter.core.checkpoint"):
        path, state = usable_checkpoint(third)
    assert path == second and state["step"] == 200
    assert "falling back to checkpoint_000001" in caplog.records[-1].getMessage()
    # Tune may hand an older one than the newest (its state lags): never jump forward
    _flip(first / "state.pt")
    assert usable_checkpoint(first) is None


def test_resaving_a_step_replaces_it(tmp_path: Path) -> None:
    _save(tmp_path, 100, value=1)
    path = _save(tmp_path, 100, value=2)
    assert _steps(tmp_path) == ["step_00000100"]
    assert load_checkpoint(path)["value"] == 2


def _disk_full_after_some_bytes(obj: object, f: io.BufferedWriter, *args: Any, **kw: Any) -> None:
    # what torch's zip writer raises when the file's write fails half way (torch 2.13)
    f.write(b"x" * 100)
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 29504 vs 29456")


@pytest.mark.parametrize("step", [100, 200])
def test_failed_write_keeps_previous_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    _save(tmp_path, 50, value="a")
    _save(tmp_path, 100, value="b")
    monkeypatch.setattr(torch, "save", _disk_full_after_some_bytes)
    with pytest.raises(RunFailed) as info:
        _save(tmp_path, step, keep=1, value="c")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "checkpoints") in message and "writing state.pt failed" in message
    monkeypatch.undo()
    assert _steps(tmp_path) == ["step_00000050", "step_00000100"]  # no temp dir, no pruning
    found = latest_checkpoint(tmp_path)
    assert found is not None and found[1]["value"] == "b"


def test_failed_replace_restores_the_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path, 100, value="old")
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        # The old copy moves aside, then putting the new one in place fails.
        if Path(src).name.startswith(".tmp-step_"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(RunFailed, match=os.strerror(errno.EIO)):
        _save(tmp_path, 100, value="new")
    monkeypatch.undo()
    assert _steps(tmp_path) == ["step_00000100"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000100")["value"] == "old"


def test_an_unwritable_folder_fails_the_run_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(RunFailed, match="cannot write checkpoint in .*a_file"):
        _save(blocker / "run", 1)


def _draw() -> tuple[list[float], list[float], torch.Tensor]:
    return (
        [random.random(), random.gauss(0.0, 1.0)],
        [*np.random.rand(3), np.random.standard_normal()],
        torch.rand(4),
    )


class _RunsCode:
    """Unpickling this would run a shell command: what a hostile checkpoint could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path: Path) -> None:
    path = _save(tmp_path, 100)
    marker = tmp_path / "ran"
    torch.save({"step": 100, "payload": _RunsCode(marker)}, path / "state.pt")
    meta = json.loads((path / "meta.json").read_text())  # a forger fixes the hash too
    meta["state_sha256"] = hashlib.sha256((path / "state.pt").read_bytes()).hexdigest()
    meta["state_bytes"] = (path / "state.pt").stat().st_size
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_rng_round_trip_through_weights_only_load() -> None:
    # A cached gaussian in python and numpy, so those parts of the state are non-trivial.
    random.gauss(0.0, 1.0)
    np.random.standard_normal()
    buffer = io.BytesIO()
    torch.save(capture_rng(), buffer)
    first = _draw()
    buffer.seek(0)
    restore_rng(torch.load(buffer, weights_only=True))
    second = _draw()
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
