"""The HTTP MJPEG reader against real servers: a camera that wants Digest (MD5, SHA-256), one
that wants Basic, redirects (credentials kept to their origin, refused targets), the checked
address used instead of a new DNS answer, and ffmpeg's own HTTP server, which sends `mpjpeg`
as `application/octet-stream`; and a real producer process reading the Digest camera."""

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
from shared.urlpolicy import CheckedSource, SourcePolicy
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


def test_a_digest_lookout_cannot_answer_is_refused_for_good(jpegs: list[bytes]) -> None:
    camera = DigestCamera(jpegs, "admin", "secret", algorithm="SHA-512-256").start()
    try:
        with pytest.raises(SourceOpenError, match="asks for Digest with SHA-512-256") as refused:
            MjpegReader(camera.url(), CONFIG, None)
        assert refused.value.permanent and "secret" not in str(refused.value)
        assert camera.authorizations == []  # nothing was sent in its place
    finally:
        camera.stop()


def test_basic_cameras_still_work(jpegs: list[bytes]) -> None:
    server = MjpegServer(jpegs, fps=20, auth="cam:s3cret").start()
    try:
        url = f"http://cam:s3cret@127.0.0.1:{server.port}/stream"
        assert read_frames(url, 2) == [(240, 320, 3)] * 2
    finally:
        server.stop()


def test_an_endless_401_body_is_not_read(jpegs: list[bytes]) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    camera.endless_401 = True
    try:
        started = time.monotonic()
        assert read_frames(camera.url(), 2) == [(240, 320, 3)] * 2
        assert time.monotonic() - started < CONFIG.open_timeout  # not ended by the deadline
    finally:
        camera.stop()


def test_a_basic_challenge_is_answered_only_once_asked(jpegs: list[bytes]) -> None:
    camera = DigestCamera(jpegs, "cam", "s3cret", scheme="Basic").start()
    try:
        assert read_frames(camera.url(), 2) == [(240, 320, 3)] * 2
        with pytest.raises(SourceOpenError, match="cannot open MJPEG stream"):
            MjpegReader(camera.url(password="nope"), CONFIG, None)
    finally:
        camera.stop()
    # Each try: first without credentials, then Basic once the camera asked.
    assert [auth[:6] for _, _, auth in camera.requests] == ["", "Basic ", "", "Basic "]


def test_credentials_do_not_follow_a_redirect_to_another_origin(jpegs: list[bytes]) -> None:
    first = DigestCamera(jpegs, "admin", "secret").start()
    other = DigestCamera(jpegs, "admin", "secret").start()
    try:
        first.elsewhere = f"http://127.0.0.1:{other.port}/stream"
        with pytest.raises(SourceOpenError, match="cannot open MJPEG stream"):
            MjpegReader(first.url("/away"), CONFIG, None)
        assert any(path == "/away" and auth for _, path, auth in first.requests)
        assert [auth for _, _, auth in other.requests] == [""]  # asked, but told nothing
    finally:
        first.stop()
        other.stop()


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("http://0x7f000001:{port}/stream", "loopback"),  # 127.0.0.1 spelled in hex
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://10.1.2.3/stream", "private"),
        ("file:///etc/passwd", None),
    ],
)
def test_a_redirect_to_a_refused_address_is_not_followed(
    jpegs: list[bytes], target: str, rule: str | None
) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    try:
        camera.elsewhere = target.format(port=camera.port)
        policy = SourcePolicy(frozenset({"http"}), (), allow_private=False)
        config = ReaderConfig(5, "tcp", 5, 5, 2_000_000, 10_000_000, policy)
        expected = rf"redirects: .*\({rule}\)" if rule else "redirects to a scheme other than"
        with pytest.raises(SourceOpenError, match=expected) as refused:
            MjpegReader(camera.url("/away"), config, None)  # the first hop as if checked
        assert refused.value.permanent and "secret" not in str(refused.value)
        assert [path for _, path, _ in camera.requests] == ["/away", "/away"]  # 401, then 302
    finally:
        camera.stop()


def test_the_reader_connects_to_the_checked_address_with_the_name_as_host(
    jpegs: list[bytes],
) -> None:
    camera = DigestCamera(jpegs, "admin", "secret").start()
    try:
        # camera.invalid resolves nowhere: the frames can only come through the checked address.
        url = f"http://admin:secret@camera.invalid:{camera.port}/stream"
        checked = CheckedSource("http", host="camera.invalid", addresses=("::1", "127.0.0.1"))
        reader = MjpegReader(url, CONFIG, checked)  # ::1 refuses: the next address is tried
        try:
            assert reader.read() is not None
        finally:
            reader.close()
        assert {host for host, _, _ in camera.requests} == {f"camera.invalid:{camera.port}"}
    finally:
        camera.stop()


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
