"""A tiny random-weights MiniCPM-o 4.5 checkpoint built from the model's own remote code.

The remote code (the files a MiniCPM-o 4.5 checkpoint ships beside its weights) is read from
the reference folder beside this checkout; tests that need it skip, saying so, where it is
absent. The checkpoint is built once per test session by the real `lookout models synth`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

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
