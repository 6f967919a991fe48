"""The contract layer's boundaries (STYLE rule 12): the API imports `shared/` and itself only,
`shared/` imports no process package, engines never talk to Redis; and the small pieces every
process shares (Backoff, hash decoding, arq key names) behave as documented."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from arq.constants import abort_jobs_ss

from shared.backoff import Backoff
from shared.keys import Keys
from shared.record_fields import RecordError, as_text, decode_hash
from shared.records import AskResult
from shared.status_records import ProducerStatus, SourceStats

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """{file: [forbidden modules it imports]} for every .py file under `package`."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = sorted(
            m for m in imported_modules(path) if m.split(".")[0] in forbidden or m in forbidden
        )
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_api_imports_neither_worker_nor_producers() -> None:
    assert offenders("api", ("worker", "producers")) == {}


def test_shared_imports_no_process_package() -> None:
    assert offenders("shared", ("api", "worker", "producers", "lookout")) == {}


def test_engines_never_import_redis_or_arq() -> None:
    assert offenders("worker/engines", ("redis", "arq")) == {}


def test_loading_the_api_loads_no_worker_producer_or_numpy() -> None:
    # Transitive imports too: the API process must not pull in the worker's engine or OpenCV.
    code = (
        "import sys, api.app, api.ingest, api.services\n"
        "tops = {m.split('.')[0] for m in sys.modules}\n"
        "print(','.join(sorted(tops & {'worker', 'producers', 'numpy', 'cv2', 'torch'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_boundary_check_sees_a_violation(tmp_path: Path) -> None:
    # The checker itself must catch an import hidden inside a function.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from worker import asks\n    import producers.capture\n")
    assert imported_modules(bad) >= {"worker", "producers.capture"}


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.attempt == 5
    backoff.reset()
    assert (backoff.attempt, backoff.next()) == (0, 0.5)


def test_backoff_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="most"):
        Backoff(2, 1)


def test_hash_decoding_handles_bytes_str_and_bad_utf8() -> None:
    raw = {b"state": b"live", "fps": 2.5, b"error": b"bad \xff byte"}
    assert decode_hash(raw) == {"state": "live", "fps": "2.5", "error": "bad \ufffd byte"}
    assert as_text(b"w-1") == "w-1"


def test_arq_key_names_match_arq() -> None:
    keys = Keys("lk")
    assert keys.arq_abort == abort_jobs_ss
    assert keys.producer_health_check("s1") == "lk:arq:producers:health-check:s1"


def test_ask_result_round_trips_and_needs_an_answer_or_an_error() -> None:
    done = AskResult(source="cam", answer="Two cars.", cycle="w-1a2b3c-4")
    assert AskResult.from_fields(done.to_fields()) == done
    cut = AskResult(source="cam", error="cut off", partial="Two")
    assert (
        AskResult.from_fields({k.encode(): v.encode() for k, v in cut.to_fields().items()}) == cut
    )
    with pytest.raises(RecordError, match="answer"):
        AskResult.from_fields({"source": "cam"})


def test_status_hashes_read_back_typed() -> None:
    stats = SourceStats.from_fields(
        {b"cycles": b"4", b"mean_latency_ms": b"812.5", b"worker": b"w"}
    )
    assert (stats.cycles, stats.skipped, stats.mean_latency_ms, stats.worker) == (4, 0, 812.5, "w")
    with pytest.raises(RecordError, match="cycles"):
        SourceStats.from_fields({"cycles": "many"})
    status = ProducerStatus(state="live", fps=9.8, frames=12, pid=42, host="h")
    assert ProducerStatus.from_fields(status.to_fields()) == status
    with pytest.raises(RecordError, match="state"):
        ProducerStatus.from_fields({"fps": "1"})
