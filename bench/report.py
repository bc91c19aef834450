"""The machine description and the markdown table."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from bench.figures import Row


def machine() -> str:
    """CPU model, cores, RAM and Python version."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return (f"{cpu}, {os.cpu_count()} cores, {kib / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()} "
            f"({platform.system()} {platform.release()})")


def load_average() -> str:
    """The 1-minute load average and what it means on this many cores (other work skews every figure)."""
    one = float(Path("/proc/loadavg").read_text().split()[0])
    return f"{one:.1f} (on {os.cpu_count()} cores)"


def render(rows: list[Row], header: list[str]) -> str:
    """Header lines, then one markdown table with the goal and verdict next to each figure."""
    lines = [*header, "", "| figure | measured | ratio | goal | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        verdict = "-" if row.met is None else ("met" if row.met else "**NOT met**")
        lines.append(f"| {row.figure} | {row.measured} | {row.ratio} | {row.goal} | {verdict} |")
    return "\n".join(lines)
