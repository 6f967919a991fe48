""".env files are read by python-dotenv, the way compose and dotenv tools read them, and still
go through Lookout's range checks; checked in-process and through a real `lookout` process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from shared.settings import SettingsError
from shared.settings_env import load_settings, read_env_file
from tests.helpers import REPO

TRICKY = (
    "# a comment line\n"
    'QUOTED="a # b"  # the comment after the quotes goes\n'
    "PLAIN=plain value # an inline comment needs a blank before the #\n"
    "HASH=a#b\n"
    "SINGLE='${HOST} stays as written'\n"
    "TABS=\t tabbed \t\n"
    'ESCAPED="one\\ttwo"\n'
    "HOST=10.0.0.5\n"
    "URL=redis://${HOST}:6380/0\n"
    "FALLBACK=${NOT_SET_ANYWHERE:-fallback}\n"
    "FROM_ENV=${LOOKOUT_TEST_FROM_ENV}\n"
    "export EXPORTED=yes\n"
    "EMPTY=\n"
)


@pytest.fixture
def tricky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOKOUT_TEST_FROM_ENV", "from the environment")
    path = tmp_path / "tricky.env"
    path.write_text(TRICKY)
    return path


def test_quotes_comments_tabs_and_expansion(tricky: Path) -> None:
    values = read_env_file(tricky)
    assert values == {
        "QUOTED": "a # b",
        "PLAIN": "plain value",
        "HASH": "a#b",
        "SINGLE": "${HOST} stays as written",
        "TABS": "tabbed",
        "ESCAPED": "one\ttwo",
        "HOST": "10.0.0.5",
        "URL": "redis://10.0.0.5:6380/0",
        "FALLBACK": "fallback",
        "FROM_ENV": "from the environment",
        "EXPORTED": "yes",
        "EMPTY": "",
    }
    # Exactly what python-dotenv itself reads, but for one thing compose does differently:
    # no expansion inside single quotes.
    assert {**dotenv_values(tricky), "SINGLE": values["SINGLE"]} == values
    assert dotenv_values(tricky)["SINGLE"] == " stays as written"


@pytest.mark.parametrize(
    ("line", "message"),
    [("NOT A SETTING\n", "expected KEY=VALUE"), ("CAPTURE_FPS\n", "CAPTURE_FPS has no value")],
)
def test_a_line_that_is_not_key_value_names_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / ".env"
    path.write_text(f"SERVER_PORT=9000\n{line}")
    with pytest.raises(SettingsError, match=rf"\.env:2: .*{message}"):
        read_env_file(path)


def test_range_checks_still_apply_to_file_values(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text('CAPTURE_FPS="100"  # too many\n')
    with pytest.raises(SettingsError, match="CAPTURE_FPS=100.0: allowed range is 0.1 to 30"):
        load_settings({}, env_file=path)


def lookout(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookout", "--env-file", str(env_file), *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "LOOKOUT_TEST_FROM_ENV": "7"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_real_process_reads_quotes_and_expansion(tmp_path: Path) -> None:
    """`lookout tail` prints the Redis URL and key prefix it got from the file."""
    path = tmp_path / ".env"
    path.write_text(
        "REDIS_HOST=127.0.0.1\t# where Redis runs\n"
        "REDIS_URL=redis://${REDIS_HOST}:1/${LOOKOUT_TEST_FROM_ENV}\n"
        'KEY_PREFIX="lk#x"  # a hash inside quotes is part of the value\n'
    )
    with subprocess.Popen(
        [sys.executable, "-m", "lookout", "--env-file", str(path), "tail", "cam"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "LOOKOUT_TEST_FROM_ENV": "7", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline()]
            while "tailing" not in lines[-1] and len(lines) < 20:
                lines.append(proc.stdout.readline())
        finally:
            proc.terminate()
            proc.wait(10)
    out = "".join(lines)
    assert re.search(r"tailing cam on redis://127\.0\.0\.1:1/7 \(prefix lk#x\)", out), out
    assert "unknown variable REDIS_HOST is ignored" in out  # helpers for ${...} are named


def test_a_real_process_stops_on_a_value_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("SERVER_PORT='70000'\n")
    done = lookout(path, "tail", "cam")
    assert done.returncode == 2
    assert "configuration error: SERVER_PORT=70000: allowed range is 1 to 65535" in done.stderr
