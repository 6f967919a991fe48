"""`var/redis.url`: the Redis URL a running `lookout up` uses, for the other `lookout` commands.

`lookout up` may start a private Redis on a random port. So that `lookout tail sample`,
`redis-cli -u "$(cat var/redis.url)"` and every other `lookout` command reach that same
Redis without being told, `up` writes the URL it uses to `var/redis.url` (relative to the
folder it runs in, like `var/sample.mp4`) and removes the file when it stops.

Precedence for every command except `up`, first match wins:
1. REDIS_URL set in the environment,
2. REDIS_URL set in the env file (`--env-file`, default `.env`),
3. the URL in `var/redis.url` (a `lookout up` is running from this folder),
4. the default, redis://127.0.0.1:6379/0.
An explicit REDIS_URL always wins, so a deployment is never redirected by a stray file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from shared.settings import Settings
from shared.settings_env import read_env_file

REDIS_URL_FILE = Path("var/redis.url")


def redis_url_is_explicit(environ: Mapping[str, str], env_file: str | Path | None) -> bool:
    """True if REDIS_URL is set in the environment or in the env file."""
    if "REDIS_URL" in environ:
        return True
    return env_file is not None and "REDIS_URL" in _env_file_values(Path(env_file))


def _env_file_values(path: Path) -> dict[str, str]:
    return read_env_file(path) if path.is_file() else {}


def read_redis_url(path: Path = REDIS_URL_FILE) -> str | None:
    """The URL a running `lookout up` wrote, or None when there is no such file."""
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    return url or None


def write_redis_url(url: str, path: Path = REDIS_URL_FILE) -> None:
    """Write `url` atomically (a reader never sees half a URL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(url + "\n")
    partial.replace(path)


def remove_redis_url(url: str, path: Path = REDIS_URL_FILE) -> None:
    """Remove the file if it still holds `url` (another `up` may have replaced it since)."""
    if read_redis_url(path) == url:
        path.unlink(missing_ok=True)


def with_redis_url_file(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    path: Path = REDIS_URL_FILE,
) -> Settings:
    """`settings` with REDIS_URL from `var/redis.url` when REDIS_URL is not set explicitly."""
    if redis_url_is_explicit(os.environ if environ is None else environ, env_file):
        return settings
    url = read_redis_url(path)
    if url is None or not url.startswith(("redis://", "rediss://", "unix://")):
        return settings
    return dataclasses.replace(settings, redis_url=url)
