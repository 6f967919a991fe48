"""A tiny random-weights MiniCPM-o 4.5 checkpoint built from the model's own remote code.

The remote code (the files a MiniCPM-o 4.5 checkpoint ships beside its weights) is read from
the reference folder beside this checkout; tests that need it skip, saying so, where it is
absent. The checkpoint is built once per test session by the real `lookout models synth`.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from shared.settings import Settings
from tests.helpers import REPO
from tests.media import make_jpegs
from worker.engines.base import WindowFrame

REMOTE_CODE = REPO.parent / "shared" / "reference" / "minicpmo45"


def require_remote_code() -> Path:
    """The remote-code folder, or skip the calling test with the reason."""
    if not (REMOTE_CODE / "modeling_minicpmo.py").is_file():
        pytest.skip(f"MiniCPM-o 4.5's remote code is not at {REMOTE_CODE}")
    return REMOTE_CODE


def synth(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`lookout models synth OUT --from <remote code> EXTRA...` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lookout", "--env-file", "/nonexistent", "models", "synth"]
        + [str(out), "--from", str(require_remote_code()), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MiniCPM-o 4.5 checkpoint (real code, random weights), built once."""
    out = tmp_path_factory.mktemp("checkpoints") / "minicpmo_tiny"
    done = synth(out, "--size", "tiny")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def cpu_settings(checkpoint: Path, **changes: Any) -> Settings:
    base = Settings(
        engine="minicpmo",
        model_path=str(checkpoint),
        engine_device="cpu",
        decode_temperature=0.0,
        decode_max_len=1024,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="session")
def engine(tiny_checkpoint: Path) -> Any:
    from worker.engines.minicpmo import MiniCPMoEngine

    loaded = MiniCPMoEngine(cpu_settings(tiny_checkpoint))
    loaded.load()
    return loaded


@pytest.fixture(scope="session")
def engine32(tiny_checkpoint: Path) -> Any:
    """The tiny checkpoint in float32 (MODEL_DTYPE=float32), for tests that compare two
    paths' greedy texts token for token (batched and alone). In bfloat16 the top two logits of
    random weights are often one rounding step apart, and CPUs with and without native bf16
    dot products (AVX512-BF16, AMX) round differently: the same test parted on one machine and
    not on another."""
    from worker.engines.minicpmo import MiniCPMoEngine

    loaded = MiniCPMoEngine(cpu_settings(tiny_checkpoint, model_dtype="float32"))
    loaded.load()
    assert loaded.info().dtype == "float32"
    return loaded


@pytest.fixture(scope="session")
def frames() -> list[WindowFrame]:
    images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in make_jpegs(4)]
    return [WindowFrame(seq=i, ts=float(i), image=img) for i, img in enumerate(images)]
