"""`lookout SUBCOMMAND ...`: parse arguments, load settings once, hand over to the process.

Each subcommand lives in the module that owns that process. The module exposes
`add_arguments(parser)` and `run(args, settings) -> int`, and imports heavy libraries
inside `run` only, so `lookout tail` does not load OpenCV and `lookout api` no engine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from lookout.redis_url_file import with_redis_url_file
from shared.logs import setup_logging
from shared.settings import SettingsError
from shared.settings_env import load_settings

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("lookout.up", "run everything on this machine: Redis, a sample source, CPU worker, API"),
    "producer": ("producers.cli", "capture one source into Redis, or supervise many (--supervise)"),
    "worker": ("worker.cli", "comment on every active source with the configured engine"),
    "api": ("api.cli", "serve the HTTP API and the page"),
    "tail": ("lookout.tail", "print a source's live messages as they cross Redis"),
    "models": (
        "worker.models_cli",
        "check, patch or synthesise (random weights) a MiniCPM-o checkpoint",
    ),
    "health": ("lookout.health", "exit 0 if this container's process is healthy"),
    "alerts": ("alerts.cli", "deliver watch-rule alerts over webhooks and MQTT"),
    "livekit": ("bridge.cli", "bring sources to LiveKit rooms and LiveKit cameras in as sources"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="lookout", description="Live AI commentary on video.")
    parser.add_argument(
        "--env-file",
        default=".env",
        help="settings file read before the environment (default .env)",
    )
    parser.add_argument("--version", action="version", version=f"lookout {lookout_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def lookout_version() -> str:
    """The installed package's version (the one in pyproject.toml)."""
    try:
        return importlib.metadata.version("lookout")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not a global option)."""
    words = iter(argv)
    for word in words:
        if word == "--env-file":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print(f"lookout: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command != "up":  # `up` writes var/redis.url; every other command may read it
        settings = with_redis_url_file(settings, env_file=args.env_file)
    setup_logging(settings.log_level, args.command, settings.log_format)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args, settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
