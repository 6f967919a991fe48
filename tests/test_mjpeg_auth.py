"""The HTTP MJPEG reader against real servers: a camera that wants Digest (MD5, SHA-256), one
that wants Basic, redirects, and ffmpeg's own HTTP server, which sends `mpjpeg` as
`application/octet-stream`; and a real producer process reading the Digest camera."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from producers.mjpeg import MjpegReader
from producers.readers import ReaderConfig, SourceOpenError
from shared.keys import Keys
from shared.urlpolicy import SourcePolicy
from tests.digest_server import DigestCamera
from tests.helpers import LookoutProcess, free_port
from tests.media import MjpegServer, make_jpegs

CONFIG = ReaderConfig(5, "tcp", 5, 5, 2_000_000, 10_000_000)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return make_jpegs(4, 320, 240)


@pytest.fixture(params=["MD5", "SHA-256", "MD5-sess"])
def camera(request: pytest.FixtureRequest, jpegs: list[bytes]) -> Iterator[DigestCamera]:
    server = DigestCamera(jpegs, "admin", "p@ss:word", algorithm=request.param).start()
    yield server
    server.stop()


def read_frames(url: str, count: int, config: ReaderConfig = CONFIG) -> list[tuple[int, ...]]:
    reader = MjpegReader(url, config, None)
    try:
        shapes = []
        while len(shapes) < count:
            image = reader.read()
            assert image is not None
            shapes.append(image.shape)
        return shapes
    finally:
        reader.close()


def test_the_test_camera_speaks_digest_as_httpx_does(camera: DigestCamera) -> None:
    plain = f"http://127.0.0.1:{camera.port}/plain"
    refused = httpx.get(plain, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Digest ")
    if camera.algorithm != "MD5-sess":  # httpx's DigestAuth does MD5 and SHA-256 (not -sess)
        ok = httpx.get(plain, auth=httpx.DigestAuth("admin", "p@ss:word"), timeout=5)
        assert ok.status_code == 200 and ok.content == camera.frames[0]
    assert httpx.get(plain, auth=httpx.DigestAuth("admin", "no"), timeout=5).status_code == 401


def test_reader_reads_a_digest_camera(camera: DigestCamera) -> None:
    url = camera.url().replace("p@ss:word", "p%40ss%3Aword")  # as a URL must spell it
    assert read_frames(url, 3) == [(240, 320, 3)] * 3
    assert camera.authorizations and all(a.startswith("Digest ") for a in camera.authorizations)
    assert not any("p@ss" in a or a.startswith("Basic") for a in camera.authorizations)


def test_digest_through_a_redirect_of_the_same_camera(jpegs: list[bytes]) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    try:
        policy = SourcePolicy(("http",), (), allow_loopback=True)
        config = ReaderConfig(5, "tcp", 5, 5, 2_000_000, 10_000_000, policy)
        assert read_frames(camera.url("/moved"), 2, config) == [(240, 320, 3)] * 2
        # Both /moved and /stream were answered with Digest: credentials stay with the origin.
        assert sum(a.startswith("Digest ") for a in camera.authorizations) == 2
    finally:
        camera.stop()


def test_a_wrong_digest_password_is_refused(jpegs: list[bytes]) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    try:
        with pytest.raises(SourceOpenError, match="cannot open MJPEG stream") as refused:
            MjpegReader(camera.url(password="wrong"), CONFIG, None)
        assert "wrong" not in str(refused.value)
    finally:
        camera.stop()


def test_basic_cameras_still_work(jpegs: list[bytes]) -> None:
    server = MjpegServer(jpegs, fps=20, auth="cam:s3cret").start()
    try:
        url = f"http://cam:s3cret@127.0.0.1:{server.port}/stream"
        assert read_frames(url, 2) == [(240, 320, 3)] * 2
    finally:
        server.stop()


def test_ffmpeg_http_server_octet_stream_mpjpeg() -> None:
    port = free_port()
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc=s=320x240:r=10:d=20",
         "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/stream"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # It serves one client: no probing the port first; retry while nothing listens yet.
        deadline = time.monotonic() + 20
        while True:
            try:
                reader = MjpegReader(f"http://127.0.0.1:{port}/stream", CONFIG, None)
                break
            except SourceOpenError:
                assert ffmpeg.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        try:
            images = [reader.read() for _ in range(3)]
        finally:
            reader.close()
        assert [None if i is None else i.shape for i in images] == [(240, 320, 3)] * 3
    finally:
        ffmpeg.kill()
        ffmpeg.wait(10)


@pytest.mark.slow
def test_a_producer_process_captures_a_digest_camera(
    test_env: dict[str, str], keys: Keys, jpegs: list[bytes]
) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    producer = LookoutProcess(
        ["producer", "--source", "door", "--url", camera.url()], test_env, "producer-digest"
    )
    client = redis.Redis.from_url(test_env["REDIS_URL"])
    try:
        deadline = time.monotonic() + 30
        while client.xlen(keys.frames("door")) < 3:
            assert producer.alive() and time.monotonic() < deadline, producer.log()
            time.sleep(0.1)
    finally:
        assert producer.stop() in (0, -signal.SIGTERM), producer.log()
        camera.stop()
    assert "secret" not in producer.log()
