"""What bench/fanout.py measures of the API process tree while it publishes: CPU seconds, time
runnable but waiting for a core, RSS, the GC passes it reports on /metrics, and a py-spy
profile on request."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import httpx
import psutil


def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of `proc` and its children."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_queue_wait(proc: psutil.Process) -> float:
    """Seconds `proc` and its children spent runnable but waiting for a CPU (Linux schedstat):
    on a machine that other work loads, the share of time the API was starved of a core."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            fields = Path(f"/proc/{p.pid}/schedstat").read_text().split()
            total += int(fields[1]) / 1e9
        except (OSError, IndexError, psutil.NoSuchProcess):
            pass
    return total


def gc_passes(port: int) -> dict[str, float]:
    """`lookout_api_gc_seconds` count and sum by generation, from the API's /metrics."""
    out: dict[str, float] = {}
    if not port:
        return out
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith(("lookout_api_gc_seconds_count", "lookout_api_gc_seconds_sum")):
            name, value = line.rsplit(" ", 1)
            gen = name.split('generation="')[1][0]
            out[f"{name.split('{')[0].rsplit('_', 1)[1]}{gen}"] = float(value)
    return out


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def profiler(
    args: argparse.Namespace, proc: psutil.Process, viewers: int, procs: int
) -> subprocess.Popen[bytes] | None:
    """py-spy on the (first) API process while publishing, as collapsed stacks."""
    if not args.profile:
        return None
    target = proc.children()[0] if procs > 1 else proc
    out = f"{args.profile}-{args.kind}-{viewers}-{args.label or 'run'}.txt"
    cmd = ["py-spy", "record", "--pid", str(target.pid), "--duration", str(int(args.seconds))]
    return subprocess.Popen(
        [*cmd, "--rate", "200", "--format", "raw", "--output", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
