"""A real OpenAI-compatible server for tests: `transformers serve` on tiny random-weight VLMs.

`./bootstrap.sh test` installs transformers (requirements/openai-serve.txt) into its own
virtual environment, `.cache/tf-serve`, which sees the project's `.venv` (torch) through a
`.pth` file: the project itself stays on transformers 4.51.0. The checkpoints are built once per
test session by `tests/openai_tiny_vlm.py` into a Hugging Face cache folder, so the server
lists them on `/v1/models` and loads them offline by their ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from tests.helpers import REPO, free_port, wait_healthy

SERVE_ENV = REPO / ".cache" / "tf-serve"
SERVE_PYTHON = SERVE_ENV / "bin" / "python"
HUB_CACHE = REPO / ".cache" / "openai-test-hub"
MODEL_A = "lookout/tiny-vlm"
MODEL_B = "lookout/tiny-vlm-b"
OPENAI_TEST_KEY = "sk-test-" + "7f3a9c" * 4  # the key the test server accepts; never in a log


def serve_version() -> str:
    """The transformers version `transformers serve` runs (for docs and failure messages)."""
    done = subprocess.run(
        [str(SERVE_PYTHON), "-c", "import transformers; print(transformers.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def build_checkpoints(*repo_ids: str) -> Path:
    """A Hugging Face cache folder holding random-weight tiny VLMs named `repo_ids`.

    Built once and kept under `.cache/openai-test-hub/`, in a folder named after a hash of
    the builder, so a changed builder builds afresh (building takes as long as importing torch).
    """
    if not SERVE_PYTHON.exists():
        raise RuntimeError(f"{SERVE_ENV} is missing: run ./bootstrap.sh test to install it")
    builder = REPO / "tests" / "openai_tiny_vlm.py"
    digest = hashlib.sha256(builder.read_bytes() + "\0".join(repo_ids).encode()).hexdigest()
    hub = HUB_CACHE / digest[:16]
    if hub.is_dir():
        return hub
    HUB_CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=HUB_CACHE))
    subprocess.run(
        [str(SERVE_PYTHON), str(builder), str(building), *repo_ids],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    with contextlib.suppress(OSError):  # another session built it meanwhile: use theirs
        building.rename(hub)
    if building.exists():
        shutil.rmtree(building)
    return hub


class ServeProcess:
    """`transformers serve` on a free port, optionally requiring an API key; restartable."""

    def __init__(self, hub: Path, key: str = "") -> None:
        self.hub = hub
        self.key = key
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="lookout-tf-serve-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> ServeProcess:
        env = {
            **os.environ,
            "HF_HUB_CACHE": str(self.hub),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
            "OMP_NUM_THREADS": "1",
        }
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        args += ["--log-level", "info", "--format", "quiet"]
        launcher = str(REPO / "tests" / "openai_serve_launcher.py")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SERVE_PYTHON), launcher, self.key or "-", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        why = wait_healthy(f"http://127.0.0.1:{self.port}/health", self.proc, timeout)
        if why:
            self.stop()
            raise RuntimeError(f"transformers serve {why}:\n{self.log()}")

    def warm(self, model: str) -> None:
        """One tiny request, so the model is loaded before a test times anything."""
        body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", json.dumps(body).encode(), headers
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill it (like a crash: streams in flight break)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
