"""`lookout livekit` as a real process (issue 16): clear errors when LiveKit is missing,
unreachable or misconfigured, retries with backoff, a clean stop, the secret never in its
output (even at DEBUG), and `--init-env` generating the credentials compose shares."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from livekit.api import TwirpError

from bridge.livekit_room import describe_server_error, redact_tokens
from lookout import health
from shared.keys import Keys
from shared.settings import Settings
from shared.settings_env import load_settings, read_env_file
from shared.status_records import LivekitBeat
from tests.helpers import REPO, LookoutProcess, free_port

SECRET = "cli-test-secret-that-must-never-be-printed"


def lookout(
    *args: str, env: dict[str, str], env_file: str = "/nonexistent"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookout", "--env-file", env_file, *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_livekit_settings_it_says_which_are_missing(test_env: dict[str, str]) -> None:
    result = lookout("livekit", env=test_env)
    assert result.returncode == 2
    assert "set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in result.stderr


def test_a_short_secret_is_refused_without_showing_it(test_env: dict[str, str]) -> None:
    result = lookout("livekit", env={**test_env, "LIVEKIT_API_SECRET": "short-secret-xyz"})
    assert result.returncode == 2
    assert "LIVEKIT_API_SECRET: at least 32 characters" in result.stderr
    assert "short-secret-xyz" not in result.stderr + result.stdout


def test_check_reports_an_unreachable_server(test_env: dict[str, str]) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    env = {**test_env, "LIVEKIT_URL": url, "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": SECRET}
    result = lookout("livekit", "--check", env=env)
    assert result.returncode == 1
    assert f"LiveKit at {url} is unreachable" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_the_bridge_retries_an_unreachable_server_and_stops_cleanly(
    test_env: dict[str, str], redis_url: str
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    env = {
        **test_env,
        "LIVEKIT_URL": url,
        "LIVEKIT_API_KEY": "lookoutkey",
        "LIVEKIT_API_SECRET": SECRET,
        "LIVEKIT_SOURCES": "door",
        "RECONNECT_DELAY": "0.1",
        "MAX_RECONNECT_DELAY": "0.4",
        "LOG_LEVEL": "DEBUG",
    }
    bridge = LookoutProcess(["livekit", "--bridge-id", "cli1"], env, "livekit")
    client = redis.Redis.from_url(redis_url)
    beat_key = Keys(test_env["KEY_PREFIX"]).livekit_bridge("cli1")
    try:
        deadline = time.monotonic() + 30
        while bridge.log().count("joining again") < 3:
            assert bridge.alive(), bridge.log()
            assert time.monotonic() < deadline, bridge.log()
            time.sleep(0.1)
        log = bridge.log()
        assert f"door: LiveKit at {url} is unreachable" in log
        while b"unreachable" not in (client.hget(beat_key, "errors") or b""):
            assert time.monotonic() < deadline, client.hgetall(beat_key)
            time.sleep(0.1)  # the heartbeat shows the error with its next beat
    finally:
        code = bridge.stop()
        client.close()
    assert code == 0
    log = bridge.log()
    assert SECRET not in log
    assert redis.Redis.from_url(redis_url).exists(beat_key) == 0  # heartbeat removed on stop


def test_init_env_writes_a_matching_pair_once(tmp_path: Path, test_env: dict[str, str]) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SERVER_PORT=8300")  # no trailing newline: kept intact
    first = lookout("livekit", "--init-env", env=test_env, env_file=str(env_file))
    assert first.returncode == 0, first.stderr
    values = read_env_file(env_file)
    assert values["SERVER_PORT"] == "8300"
    assert values["LIVEKIT_API_KEY"].startswith("lookout")
    assert len(values["LIVEKIT_API_SECRET"]) >= 32
    assert values["LIVEKIT_PUBLIC_URL"] == "ws://localhost:7880"
    assert values["LIVEKIT_API_SECRET"] not in first.stdout
    load_settings(values, env_file=None)  # a valid pair: the secret is long enough
    second = lookout("livekit", "--init-env", env=test_env, env_file=str(env_file))
    assert "left as it is" in second.stdout
    assert read_env_file(env_file) == values  # never rotated behind the server's back
    fresh = tmp_path / "new.env"
    assert lookout("livekit", "--init-env", env=test_env, env_file=str(fresh)).returncode == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_the_health_check_finds_this_hosts_bridge(settings: Settings, keys: Keys) -> None:
    assert health.role_from_cmdline(["/sbin/docker-init", "--", "lookout", "livekit"]) == "livekit"
    with pytest.raises(health.Unhealthy, match="no bridge heartbeat from host box1"):
        health.check_livekit(settings, 1, host="box1")
    client = redis.Redis.from_url(settings.redis_url)
    beat = LivekitBeat(rooms="door", host="box1", pid=7, updated_at=time.time())
    client.hset(keys.livekit_bridge("box1-7-abc"), mapping=beat.to_fields())  # type: ignore[arg-type]
    client.close()
    assert "rooms: door" in health.check_livekit(settings, 1, host="box1")


def test_error_messages_name_the_cause_and_carry_no_token() -> None:
    url = "ws://rtc.example.org:7880"
    refused = describe_server_error(url, TwirpError("unauthenticated", "invalid token", status=401))
    assert refused.startswith(f"LiveKit at {url} refused the credentials")
    assert "LIVEKIT_API_KEY and LIVEKIT_API_SECRET" in refused
    other = describe_server_error(url, TwirpError("internal", "boom", status=500))
    assert other == f"LiveKit at {url} answered 500 internal: boom"
    down = describe_server_error(url, ConnectionRefusedError(111, "Connection refused"))
    assert down.startswith(f"LiveKit at {url} is unreachable")
    leaked = "failed: ws://h:7880/rtc?sdk=python&access_token=eyJhbGciOi.x.y&auto_subscribe=1"
    assert (
        redact_tokens(leaked)
        == "failed: ws://h:7880/rtc?sdk=python&access_token=***&auto_subscribe=1"
    )
