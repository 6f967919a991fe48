"""The source URL policy: every spelling of a refused address, file roots compared lexically by
the API and after resolve() by the supervisor, redirects and DNS answers checked again, 422s
naming the rule, uniform errors, and a source that fails later shown in the API."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from producers.readers import ReaderConfig, SourceOpenError, open_reader
from shared.settings import SettingsError
from shared.settings_env import load_settings
from shared.source_urls import parse_source_url
from shared.urlpolicy import SourcePolicy, SourcePolicyError, check_source_url, resolve_host
from tests.helpers import LookoutProcess, free_port
from tests.test_api_support import ApiServer
from tests.worker_support import until

ALL = frozenset({"rtsp", "rtsps", "http", "https", "file", "device"})
DEFAULT = SourcePolicy(ALL, ("var", "media"))
CONTROL = "control-secret-policy"
HEADERS = {"Authorization": f"Bearer {CONTROL}"}


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://2852039166/", "metadata"),  # decimal
        ("http://0xa9fea9fe/", "metadata"),  # hex
        ("http://0251.0376.0251.0376/", "metadata"),  # octal parts
        ("http://169.254.43518/", "metadata"),  # a.b.c: the last part is 16 bits
        ("http://[::ffff:169.254.169.254]/", "metadata"),  # IPv4-mapped IPv6
        ("http://[::ffff:a9fe:a9fe]/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://metadata.google.internal./", "metadata"),
        ("http://127.0.0.1:6379/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://127.0.0.1./", "loopback"),  # trailing dot
        ("rtsp://[::1]:5432/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4
        ("http://localhost:8199/", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:8199/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://cam%2elan/", "host"),
        ("gopher://cam/", "scheme"),
        ("/etc/passwd", "file-root"),
        ("file:///etc/passwd", "file-root"),
        ("/proc/self/environ", "file-root"),
        ("media/../../etc/passwd", "file-root"),
        ("media/../var/../../x.mp4", "file-root"),
        ("mediax/clip.mp4", "file-root"),  # a sibling with the root's name as prefix
        ("file://host/media/clip.mp4", "file-root"),
        ("/" + "a" * 2000, "file-root"),  # too long to stat: never a 500
    ],
)
def test_refused_urls_name_their_rule(url: str, rule: str) -> None:
    with pytest.raises(SourcePolicyError) as refused:
        check_source_url(url, DEFAULT)
    assert refused.value.rule == rule and f"({rule})" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://192.168.1.20:554/stream1",
        "http://10.0.0.7/mjpg/video.mjpg",
        "rtsp://[fd12:3456::7]/live",
        "rtsp://cam.lan/live",
        "http://8.8.8.8/",
        "media/street.mp4",
        f"file://localhost{Path.cwd()}/media/street.mp4",
        "var/sample.mp4",
        "/dev/video0",
        "0",
    ],
)
def test_lan_cameras_and_files_under_the_roots_are_allowed(url: str) -> None:
    check_source_url(url, DEFAULT)


def test_settings_change_what_is_allowed(tmp_path: Path) -> None:
    closed = SourcePolicy(frozenset({"rtsp"}), (), allow_private=False, allow_loopback=True)
    with pytest.raises(SourcePolicyError, match=r"\(private\)"):
        check_source_url("rtsp://192.168.1.20/s", closed)
    with pytest.raises(SourcePolicyError, match=r"\(scheme\)"):
        check_source_url("http://8.8.8.8/", closed)
    check_source_url("rtsp://127.0.0.1:8554/s", closed)
    with pytest.raises(SourcePolicyError, match=r"\(metadata\)"):  # never, whatever the settings
        check_source_url("rtsp://169.254.169.254/s", closed)
    with pytest.raises(SettingsError, match="SOURCE_SCHEMES"):
        load_settings({"SOURCE_SCHEMES": "rtsp,ftp"}, env_file=None)


def test_the_supervisor_checks_paths_after_resolve_and_names_after_dns(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (root / "escape.mp4").symlink_to("/etc/passwd")
    policy = SourcePolicy(ALL, (str(root),))
    url = str(root / "escape.mp4")
    assert check_source_url(url, policy).path == url  # lexically inside: the API accepts it
    with pytest.raises(SourcePolicyError, match=r"\(file-root\)"):
        check_source_url(url, policy, resolve=True)  # the supervisor sees where it leads
    with pytest.raises(SourcePolicyError, match=r"\(loopback\)"):
        resolve_host("localhost", 80, policy)  # what a name resolving to 127.0.0.1 meets
    with pytest.raises(OSError):
        resolve_host("no-such-host.invalid", 80, policy)


class Redirector:
    """An HTTP server on 127.0.0.1 answering every GET with a redirect to `target`."""

    def __init__(self, target: str) -> None:
        owner = self
        self.target = target
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits += 1
                self.send_response(302)
                self.send_header("Location", owner.target)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def redirector() -> Iterator[Redirector]:
    server = Redirector("http://169.254.169.254/latest/meta-data/")
    yield server
    server.close()


def test_redirects_are_checked_again(redirector: Redirector) -> None:
    policy = SourcePolicy(ALL, (), allow_loopback=True)
    config = ReaderConfig(5, "tcp", 2, 2, 2_000_000, 10_000_000, policy)
    with pytest.raises(SourceOpenError, match=r"redirects: .*\(metadata\)") as refused:
        open_reader(parse_source_url(f"http://127.0.0.1:{redirector.port}/cam"), config)
    assert refused.value.permanent and redirector.hits == 1
    redirector.target = f"http://127.0.0.1:{redirector.port}/again"  # a loop
    with pytest.raises(SourceOpenError, match="cannot open MJPEG stream"):
        open_reader(parse_source_url(f"http://127.0.0.1:{redirector.port}/cam"), config)


@pytest.fixture
def stack(test_env: dict[str, str]) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    env = {
        **test_env,
        "API_KEYS": f"{CONTROL}:control",
        "SOURCE_ALLOW_LOOPBACK": "true",
        "RECONNECT_DELAY": "0.2",
        "MAX_RECONNECT_DELAY": "0.5",
        "OPEN_TIMEOUT": "1",
    }
    api = ApiServer(env, "api-policy")
    supervisor = LookoutProcess(["producer", "--supervise"], env, "sup-policy")
    yield api, env
    supervisor.stop(signal.SIGTERM)
    api.proc.stop(signal.SIGTERM)


@pytest.mark.slow
async def test_api_refuses_with_422_and_shows_sources_that_fail_later(
    stack: tuple[ApiServer, dict[str, str]], redirector: Redirector, redis_url: str
) -> None:
    api, _ = stack
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with httpx.AsyncClient(base_url=api.url, headers=HEADERS, timeout=10) as http:

        async def add(name: str, url: str) -> httpx.Response:
            return await http.post("/api/sources", json={"name": name, "url": url})

        refused = await add("meta", "http://[::ffff:169.254.169.254]/")
        assert refused.status_code == 422 and refused.json()["field"] == "url"
        assert "(metadata)" in refused.json()["error"]
        missing, secret = await add("a", "/nonexistent/x.mp4"), await add("b", "/etc/shadow")
        assert missing.status_code == secret.status_code == 422
        assert missing.json()["error"] == secret.json()["error"]  # nothing about existence
        assert (await add("long", "/" + "x" * 2000)).status_code == 422
        assert (await add("redir", f"http://127.0.0.1:{redirector.port}/cam")).status_code == 202
        assert (await add("closed", f"http://127.0.0.1:{free_port()}/")).status_code == 202
        assert (await add("redis", f"http://127.0.0.1:{redis_port}/")).status_code == 202

        async def shown() -> dict[str, dict[str, str]]:
            listed = (await http.get("/api/sources")).json()["sources"]
            return {s["name"]: s for s in listed}

        async def all_shown() -> bool:
            sources = await shown()
            return sources.get("redir", {}).get("state") == "failed" and all(
                sources.get(n, {}).get("error") for n in ("closed", "redis")
            )

        await until(all_shown, 30, "the failed and failing sources in /api/sources")
        sources = await shown()
        assert "(metadata)" in sources["redir"]["error"]
        # A closed port and an open one speaking another protocol look the same.
        closed, other = sources["closed"]["error"], sources["redis"]["error"]
        assert closed.split("'")[0::2] == other.split("'")[0::2], (closed, other)
        status = (await http.get("/api/status")).json()["sources"]
        failed = next(s for s in status if s["name"] == "redir")
        assert failed["producer"]["state"] == "failed"
        assert (await http.delete("/api/sources/redir")).status_code == 204
        assert "redir" not in await shown()
