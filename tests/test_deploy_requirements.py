"""requirements/*.txt, which the images install from, stay in step with pyproject.toml.

The two slow tests run what the Dockerfiles' RUN steps run, as far as this machine allows:
the CPU image's install into a fresh venv (then `pip check`, `lookout --help` and the health
command), and for the GPU image a full dependency resolution (`pip install --dry-run`) of
its three files, which fetches package metadata only, not the multi-GB torch and CUDA wheels.
Both need PyPI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

REQS = REPO / "requirements"
# Where the images knowingly differ from pyproject.toml, and why (the lead's to reconcile).
KNOWN_DEVIATIONS: dict[str, str] = {}


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def read_requirements(path: Path) -> tuple[list[Requirement], list[str]]:
    """Requirements of a file and its `-c`/`-r` option lines, comments dropped."""
    reqs, options = [], []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            reqs.append(Requirement(line))
    return reqs, options


def by_name(reqs: list[Requirement]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in reqs}


def test_base_requirements_equal_pyproject_dependencies() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    expected = by_name([Requirement(r) for r in project["dependencies"]])
    reqs, options = read_requirements(REQS / "base.txt")
    assert options == []
    assert {n: str(r) for n, r in by_name(reqs).items()} == {n: str(r) for n, r in expected.items()}


def test_gpu_requirements_cover_the_gpu_extra() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    extra = by_name([Requirement(r) for r in project["optional-dependencies"]["gpu"]])
    torch_reqs, torch_options = read_requirements(REQS / "gpu-torch.txt")
    rest, options = read_requirements(REQS / "gpu.txt")
    assert torch_options == []
    # The constraint that keeps every later resolution on the installed CUDA torch build.
    assert options == ["-c gpu-torch.txt"]
    ours = by_name(torch_reqs + rest)
    assert set(ours) == set(extra)
    for name, req in ours.items():
        pins = [s for s in req.specifier if s.operator == "=="]
        if name in KNOWN_DEVIATIONS:
            continue
        for pin in pins:
            assert extra[name].specifier.contains(pin.version), f"{req} is outside {extra[name]}"
    for req in torch_reqs:
        assert [s.operator for s in req.specifier] == ["=="], f"{req}: torch must be an exact pin"


def test_known_deviations_are_real_requirements() -> None:
    names = {canonicalize_name(r.name) for r in read_requirements(REQS / "gpu.txt")[0]}
    assert set(KNOWN_DEVIATIONS) <= names


def test_dockerfiles_install_from_these_files() -> None:
    cpu = (REPO / "Dockerfile.cpu").read_text()
    gpu = (REPO / "Dockerfile.gpu").read_text()
    assert "pip install -r /tmp/requirements/base.txt" in cpu
    assert "pip install -r /tmp/requirements/gpu-torch.txt" in gpu
    assert "pip install -r /tmp/requirements/base.txt -r /tmp/requirements/gpu.txt" in gpu
    # torch's layer comes first, so the resolver of the second step sees it installed.
    assert gpu.index("gpu-torch.txt\n") < gpu.index("-r /tmp/requirements/gpu.txt")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_image_install_steps_in_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    steps = [
        [py, "-m", "pip", "install", "-q", "-r", str(REQS / "base.txt")],
        [py, "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
        [py, "-m", "pip", "check"],
    ]
    for step in steps:
        result = _run(step, timeout=540, cwd=tmp_path)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
    # The image's entrypoint and healthcheck, from outside the source tree.
    helped = _run([str(env_dir / "bin" / "lookout"), "--help"], cwd=tmp_path, timeout=60)
    assert helped.returncode == 0 and "worker" in helped.stdout, helped.stderr
    health = _run([py, "-m", "lookout.health", "--help"], cwd=tmp_path, timeout=60)
    assert health.returncode == 0 and "auto" in health.stdout, health.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_requirements_resolve_with_the_pinned_cuda_torch(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-r",
            str(REQS / "base.txt"),
            "-r",
            str(REQS / "gpu-torch.txt"),
            "-r",
            str(REQS / "gpu.txt"),
        ],
        timeout=540,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    resolved: dict[str, str] = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = by_name(
        read_requirements(REQS / "gpu-torch.txt")[0] + read_requirements(REQS / "gpu.txt")[0]
    )
    for name, req in pins.items():
        assert req.specifier.contains(resolved[name], prereleases=True), (name, resolved[name])
    # torch from PyPI on Linux x86_64 is the CUDA 12.8 build the image's base matches.
    assert resolved["nvidia-cuda-runtime-cu12"].startswith("12.8.")
