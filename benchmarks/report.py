"""What every benchmark's result file shares: a header made at run time, 95 % CIs, paired deltas, tables.

A result file states the date, the machine and the exact command it ran with, taken when it runs (never
hard-coded text), so that a re-run on another machine says so itself.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["ci95", "header", "machine", "mean_ci", "paired_delta", "table", "write"]


def machine() -> str:
    """CPU model, core count and (when present) the GPU, e.g. ``"Intel Xeon ... (2 cores), no GPU"``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu} ({os.cpu_count()} cores), {gpu}"


def header(title: str, argv: Sequence[str] | None = None) -> list[str]:
    """The first lines of a result file: title, date (UTC), machine, software and the command, as run."""
    argv = list(sys.argv if argv is None else argv)
    versions = []
    for name in ("torch", "diffusers", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
    command = "python " + shlex.join(
        [os.path.relpath(argv[0]) if argv and argv[0].endswith(".py") else argv[0], *argv[1:]]
    )
    return [
        f"# {title}",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}  ",
        f"Software: Python {platform.python_version()}, {', '.join(versions) or 'no torch loaded'}  ",
        f"Command: `{command}`",
        "",
    ]


def ci95(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of the normal-approximation 95 % CI of the mean (``1.96 * sd / sqrt(n)``)."""
    x = np.asarray(values, dtype=np.float64)
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def mean_ci(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """``"0.612 [0.590, 0.634]"``."""
    x = np.asarray(values, dtype=np.float64)
    m, h = float(x.mean()), ci95(x)
    return f"{m:.{digits}f} [{m - h:.{digits}f}, {m + h:.{digits}f}]"


def paired_delta(values: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """Mean of the per-episode differences with its 95 % CI, e.g. ``"+0.051 [+0.032, +0.070]"``: the
    episodes must be paired (same query, same seed, in the same order)."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_delta needs paired episodes; got {a.shape} and {b.shape}.")
    d = a - b
    m, h = float(d.mean()), ci95(d)
    return f"{m:+.{digits}f} [{m - h:+.{digits}f}, {m + h:+.{digits}f}]"


def table(header_cells: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header_cells) + " |", "|" + "---|" * len(header_cells)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write(path: str | Path, lines: Sequence[str]) -> None:
    """Write a result file (creating its folder) and echo it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines).rstrip() + "\n"
    path.write_text(text)
    print(text)
