"""Plots of bench/fanout.py results against viewers (PNG): p50/p99 latency, and the API's CPU
time per message delivered to one viewer (what a viewer costs, whatever share of the cores
the API got on a loaded machine)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot(results: Path, prefix: str) -> list[Path]:
    """One PNG per stream kind in `results` (JSON lines): `PREFIX-KIND.png`."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    written = []
    for kind, kind_rows in by_kind.items():
        series: dict[str, list[dict]] = defaultdict(list)
        for row in kind_rows:
            name = (
                f"{row['label'] or 'run'}, {row['procs']} process{'es' if row['procs'] > 1 else ''}"
            )
            series[name].append(row)
        fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
        for name, points in sorted(series.items()):
            points.sort(key=lambda r: r["viewers"])
            x = [r["viewers"] for r in points]
            (line,) = lat.plot(x, [r["p99_ms"] for r in points], marker="o", label=f"{name} p99")
            lat.plot(
                x,
                [r["p50_ms"] for r in points],
                marker=".",
                linestyle="--",
                color=line.get_color(),
                label=f"{name} p50",
            )
            cpu.plot(x, [r["cpu_us_per_delivery"] for r in points], marker="o", label=name)
        floors = [r["floor_p99_ms"] for r in kind_rows if r["floor_p99_ms"] is not None]
        if floors:
            lat.axhline(
                sorted(floors)[len(floors) // 2],
                color="grey",
                linestyle=":",
                label="floor p99 (direct Redis reader, median of runs)",
            )
        lat.set_yscale("log")
        lat.set_xlabel("viewers")
        lat.set_ylabel("publish → receive (ms)")
        lat.set_title(f"{kind.upper()}: latency at the viewers")
        lat.legend(fontsize=7)
        cpu.set_xlabel("viewers")
        cpu.set_ylabel("API CPU µs per message delivered to one viewer")
        cpu.set_ylim(bottom=0)
        cpu.set_title(f"{kind.upper()}: API CPU per delivery")
        cpu.legend(fontsize=7)
        fig.tight_layout()
        out = Path(f"{prefix}-{kind}.png")
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
        print(f"wrote {out}")
    return written


def table(results: Path) -> str:
    """The results as a Markdown table, one row per run, in file order."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    head = (
        "| kind | code | procs | viewers | delivered | min/viewer/s | p50 ms | p99 ms "
        "| floor p50/p99 ms | API CPU % | CPU µs/delivery | API RSS MB | API waited for CPU % "
        "| client CPU % | GC passes in window (ms) |\n| " + " | ".join(["---"] * 15) + " |"
    )
    lines = [head]
    for r in rows:
        gc = "n/a" if r.get("gc_all_ms") is None else f"{r['gc_all_ms']}"
        lines.append(
            f"| {r['kind']} | {r['label']} | {r['procs']} | {r['viewers']:,} "
            f"| {r['delivered'] * 100:.1f}% | {r['min_per_viewer_per_s']:.2f} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['floor_p50_ms']}/{r['floor_p99_ms']} | {r['cpu_pct']} "
            f"| {r['cpu_us_per_delivery']} | {r['rss_mb']} | {r['api_waiting_for_cpu_pct']} "
            f"| {r['client_cpu_pct']} | {gc} |"
        )
    return "\n".join(lines)
