"""A real RTSP server for tests: GStreamer's RTSP server serving a live H.264 test pattern.

Run with the system interpreter (the gi bindings are not in the venv), e.g.
`/usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam`. It serves
rtsp://127.0.0.1:PORT/PATH until it gets SIGTERM or SIGINT.
"""

import argparse
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={width},height={height},"
    "framerate={fps}/1 ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max={fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--pattern", default="ball")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        LAUNCH.format(pattern=args.pattern, width=args.width, height=args.height, fps=args.fps)
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on port {args.port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"rtsp://127.0.0.1:{args.port}{args.path} ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
