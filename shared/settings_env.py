"""Reading the settings table (`shared/settings.py`) from the environment and a `.env` file.

`load_settings()` builds the one frozen `Settings` object at process start: every variable is
parsed to its field's type and checked against the range and choices in its metadata, and a
bad value stops the process with the variable's name and what is allowed. `.env` files are
read with python-dotenv's parser, as `docker compose` reads them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables

from shared.settings import Settings, SettingsError
from shared.settings_groups.capture import SOURCE_SCHEMES

log = logging.getLogger(__name__)


def settings_fields() -> list[dataclasses.Field[Any]]:
    """The fields of `Settings` in declaration order (for docs and .env.example)."""
    return list(dataclasses.fields(Settings))


def env_name(f: dataclasses.Field[Any]) -> str:
    return f.name.upper()


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file with python-dotenv's parser, as `docker compose` reads one.

    `KEY=VALUE` lines, optional `export `, `#` comments (inside quotes a `#` is text; after an
    unquoted value it needs a blank before it), blanks and tabs around unquoted values dropped,
    double quotes with backslash escapes (`\\t`, `\\n`), single quotes taken literally, and
    `${VAR}` / `${VAR:-default}` expanded outside single quotes, from the environment first
    (which also wins over the file for settings), then the lines above. python-dotenv alone
    would expand inside single quotes too; compose does not, and neither does Lookout.
    A line that is not `KEY=VALUE` stops the process with its number.
    """
    values: dict[str, str] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            where = f"{path}:{binding.original.line}"
            if binding.error:
                raise SettingsError(
                    f"{where}: expected KEY=VALUE, got {binding.original.string.strip()!r}"
                )
            if binding.key is None:
                continue  # a blank or comment line
            if binding.value is None:
                raise SettingsError(
                    f"{where}: {binding.key} has no value (expected {binding.key}=VALUE)"
                )
            value = binding.value
            if not _single_quoted(binding.original.string):
                known = {**values, **os.environ}
                value = "".join(atom.resolve(known) for atom in parse_variables(value))
            values[binding.key] = value
    return values


def _single_quoted(line: str) -> bool:
    """True if the value of a `KEY=VALUE` line is in single quotes."""
    return line.partition("=")[2].lstrip(" \t").startswith("'")


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    name, meta = env_name(f), f.metadata
    kind: type = type(f.default)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r}: expected true or false")
    if kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected a {kind.__name__}") from None
        _check_range(name, number, meta)
        return number
    text = raw.strip()
    if meta["choices"] is not None:
        # Case-insensitive match, stored in the spelling of the allowed list.
        matches = [c for c in meta["choices"] if c.lower() == text.lower()]
        if not matches:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(meta['choices'])}")
        return matches[0]
    return text


def _check_range(name: str, value: float, meta: Mapping[str, Any]) -> None:
    lo, hi = meta["lo"], meta["hi"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingsError(f"{name}={value}: allowed range is {lo} to {hi}")


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Build and validate the settings; the environment wins over the `.env` file.

    Raises SettingsError naming the first bad variable. Unknown names in `.env` are logged,
    since a typo there would otherwise be silently ignored.
    """
    env = dict(os.environ if environ is None else environ)
    file_values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = read_env_file(Path(env_file))
    known = {env_name(f) for f in settings_fields()}
    for unknown in sorted(set(file_values) - known):
        log.warning("%s: unknown variable %s is ignored", env_file, unknown)
    values: dict[str, Any] = {}
    for f in settings_fields():
        raw = env.get(env_name(f), file_values.get(env_name(f)))
        if raw is not None:
            values[f.name] = _parse(f, raw)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    if s.max_reconnect_delay < s.reconnect_delay:
        raise SettingsError(
            f"MAX_RECONNECT_DELAY={s.max_reconnect_delay} must be at least RECONNECT_DELAY={s.reconnect_delay}"
        )
    # Braces would become the Redis Cluster hash tag of every key (see Keys._per_source).
    if not s.key_prefix or any(c in s.key_prefix for c in " *?[]{}"):
        raise SettingsError(
            f"KEY_PREFIX={s.key_prefix!r}: must be non-empty, no spaces, glob characters or braces"
        )
    if s.media_token_ttl > s.media_token_max_ttl:
        raise SettingsError(
            f"MEDIA_TOKEN_TTL={s.media_token_ttl} must be at most MEDIA_TOKEN_MAX_TTL={s.media_token_max_ttl}"
        )
    unknown_schemes = {x.strip() for x in s.source_schemes.split(",") if x.strip()} - set(
        SOURCE_SCHEMES
    )
    if unknown_schemes:
        raise SettingsError(
            f"SOURCE_SCHEMES={s.source_schemes!r}: expected some of {', '.join(SOURCE_SCHEMES)}"
        )
    if not s.redis_url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        raise SettingsError(
            f"REDIS_URL={s.redis_url!r}: expected redis://, rediss://, unix:// or redis+sentinel://"
        )
    if s.redis_url.startswith("redis+sentinel://"):
        from shared.sentinel import parse_sentinel_url

        try:
            parse_sentinel_url(s.redis_url)
        except ValueError as exc:
            raise SettingsError(f"REDIS_URL: {exc}") from None
        if s.redis_cluster:
            raise SettingsError("REDIS_CLUSTER=true takes a redis:// node URL, not Sentinel's")
    if s.openai_speech_url and not s.openai_speech_url.startswith(("http://", "https://")):
        # Only the scheme is named: the URL may carry a password.
        scheme = s.openai_speech_url.partition(":")[0][:20]
        raise SettingsError(f"OPENAI_SPEECH_URL: expected http:// or https://, not {scheme!r}")
    if s.livekit_url and not s.livekit_url.startswith(("ws://", "wss://", "http://", "https://")):
        raise SettingsError(
            f"LIVEKIT_URL={s.livekit_url!r}: expected ws://, wss://, http:// or https://"
        )
    if s.livekit_api_secret and len(s.livekit_api_secret) < 32:
        # LiveKit servers refuse shorter secrets; the message never shows the secret itself.
        raise SettingsError(
            f"LIVEKIT_API_SECRET: at least 32 characters (this one has {len(s.livekit_api_secret)})"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]{0,64}", s.livekit_room_prefix):
        raise SettingsError(
            f"LIVEKIT_ROOM_PREFIX={s.livekit_room_prefix!r}: up to 64 letters, digits, '-', '_' or '.'"
        )
