#!/usr/bin/env bash
# Set up Lookout on a fresh Debian/Ubuntu machine, then run it or its tests.
#
#   ./bootstrap.sh up     install what is missing, then `lookout up` (page on http://127.0.0.1:8199)
#   ./bootstrap.sh test   install what is missing (test tools too), then run the whole test suite
#
# What it installs: system packages through apt-get where a command is missing (as root, or
# through sudo), a virtual environment in .venv with Lookout and its dependencies.
# Extra arguments after `test` go to pytest; after `up`, to `lookout up`.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-}"
[ $# -gt 0 ] && shift
case "$mode" in
  up|test) ;;
  *) echo "usage: ./bootstrap.sh up|test [args...]" >&2; exit 2 ;;
esac

# --- system packages (only those whose command is missing) ---
need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want redis-server redis-server
want espeak-ng espeak-ng
want ffmpeg ffmpeg
if [ "$mode" = test ]; then
  want redis-cli redis-tools
  want chromium chromium
  want mosquitto mosquitto  # the MQTT alert tests run a real broker
  want gst-launch-1.0 gstreamer1.0-tools
  want caddy caddy  # the reverse-proxy test runs the real Caddyfile
  # The RTSP test server runs on the system interpreter with GStreamer's gi bindings.
  /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' >/dev/null 2>&1 ||
    need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "bootstrap: installing system packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# --- Python environment ---
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "bootstrap: Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ "$mode" = test ]; then
  "${pip[@]}" -e ".[dev]" -r requirements/test.txt
else
  "${pip[@]}" -e .
fi
# The page's LiveKit client (npm registry, pinned); without it only the LiveKit options fail.
.venv/bin/python -m lookout.vendor ||
  echo "bootstrap: livekit-client not fetched; the page's LiveKit options will say so" >&2

if [ "$mode" = up ]; then
  exec .venv/bin/lookout up "$@"
fi
# The ENGINE=openai tests' real server (requirements/openai-serve.txt): a recent transformers in a
# virtual environment of its own that reuses .venv's packages (torch) through a .pth file.
serve_env=.cache/tf-serve
if ! cmp -s requirements/openai-serve.txt "$serve_env/installed.txt"; then
  rm -rf "$serve_env"
  "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$serve_env"
  .venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > \
    "$("$serve_env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lookout-venv.pth"
  "$serve_env/bin/python" -m pip install -q --disable-pip-version-check -r requirements/openai-serve.txt
  cp requirements/openai-serve.txt "$serve_env/installed.txt"
fi
# The test command of README.md (and of .ci/run): lint, types, then every test.
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -rs "$@"
