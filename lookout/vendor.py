"""Fetch the page's LiveKit JS client from the npm registry into `api/static/vendor/`.

`python -m lookout.vendor` downloads the pinned `livekit-client` tarball from
registry.npmjs.org, checks it against the registry's published sha512 integrity, and writes
its browser bundle (`dist/livekit-client.umd.js`, about 600 KB, so not kept in git) and
licence next to the page. bootstrap.sh and both Dockerfiles run it; the page never loads
anything from a CDN. `--tarball FILE` uses a tarball fetched before (e.g. with `npm pack`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "2.23.0"
INTEGRITY = "sha512-j9Kg86nJjBjNFUD+ukp2jwMCGa0k+YD5gU//RzAM+ZY3pbG631QCte7fQjwqWMmtBzhDJL9nKYuOLMv/9IbAxg=="
TARBALL_URL = f"https://registry.npmjs.org/livekit-client/-/livekit-client-{VERSION}.tgz"
DEST = Path(__file__).resolve().parent.parent / "api" / "static" / "vendor"
BUNDLE = "livekit-client.umd.js"
MEMBERS = {f"package/dist/{BUNDLE}": BUNDLE, "package/LICENSE": "livekit-client.LICENSE"}
MAX_TARBALL_BYTES = 20_000_000


class VendorError(Exception):
    """The tarball could not be fetched, or is not the pinned one."""


def check_integrity(data: bytes) -> None:
    """VendorError unless `data` is the pinned tarball (npm's `sha512-<base64>`)."""
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise VendorError(
            f"livekit-client {VERSION} tarball has integrity {digest}, expected {INTEGRITY}"
        )


def fetch(timeout: float = 60.0) -> bytes:
    """The pinned tarball from the npm registry."""
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=timeout) as response:
            data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    except OSError as exc:
        raise VendorError(f"could not download {TARBALL_URL}: {exc}") from None
    if len(data) > MAX_TARBALL_BYTES:
        raise VendorError(f"{TARBALL_URL} is larger than {MAX_TARBALL_BYTES} bytes")
    return data


def install(data: bytes, dest: Path = DEST) -> Path:
    """Check `data` and write the bundle and licence into `dest`; returns the bundle's path."""
    check_integrity(data)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in MEMBERS.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise VendorError(f"{member} missing from livekit-client {VERSION}")
            (dest / name).write_bytes(extracted.read())
    (dest / "VERSION").write_text(f"livekit-client {VERSION}\n")
    return dest / BUNDLE


def installed(dest: Path = DEST) -> bool:
    """Whether `dest` already holds this version's bundle."""
    marker = dest / "VERSION"
    return (dest / BUNDLE).is_file() and marker.is_file() and VERSION in marker.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lookout.vendor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dest", type=Path, default=DEST, help=f"folder (default {DEST})")
    parser.add_argument("--tarball", type=Path, help="use this livekit-client tarball")
    parser.add_argument("--force", action="store_true", help="fetch even if already installed")
    args = parser.parse_args(argv)
    if installed(args.dest) and not args.force and args.tarball is None:
        print(f"livekit-client {VERSION} already in {args.dest}")
        return 0
    try:
        data = args.tarball.read_bytes() if args.tarball else fetch()
        path = install(data, args.dest)
    except (VendorError, OSError, tarfile.TarError) as exc:
        print(f"lookout.vendor: {exc}", file=sys.stderr)
        return 1
    print(f"livekit-client {VERSION} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
