"""What every benchmark's result file shares: a header made at run time, 95 % CIs, paired deltas, tables.

A result file states the date, the machine, its load and the exact command it ran with, taken when it runs
(never hard-coded text), so that a re-run on another machine says so itself. Every script in ``benchmarks/``
imports this module (``import report``: it lies next to them) instead of writing its own header or CI; the CI
itself is :func:`agents.evaluate.ci95`, the one the package's evaluations use.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agents.evaluate import ci95, paired_interval  # the project's one 95 % CI (re-exported here)

__all__ = [
    "ci95",
    "header",
    "interval",
    "load",
    "machine",
    "mean_ci",
    "paired_delta",
    "paired_interval",
    "table",
    "write",
]

#: Environment variables that change what a benchmark measures; the header's command shows those that are set.
COMMAND_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH")


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


def load() -> str:
    """The load averages over the last 1, 5 and 15 minutes against the core count, e.g. ``"3.10, 2.95, 2.40 on 2
    cores"``. Scripts make their header after measuring, so for a run of some minutes the 5- and 15-minute
    figures cover it; a load above the core count means other jobs shared the CPU and timings are noisy."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):  # not on every platform
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def header(title: str, argv: Sequence[str] | None = None) -> list[str]:
    """The first lines of a result file: title, date (UTC), machine, its load, software and the command, as run.

    ``argv`` defaults to ``sys.argv``; a script whose ``main`` takes its own argument list passes
    ``[__file__, *args]``. Variables of :data:`COMMAND_ENV` that are set are shown before the command.
    """
    argv = list(sys.argv if argv is None else argv)
    versions = []
    for name in ("torch", "diffusers", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        threads = torch.get_num_threads()
        versions.append(f"{threads} torch thread{'' if threads == 1 else 's'}")
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in COMMAND_ENV if k in os.environ]
    command = "python " + shlex.join(
        [os.path.relpath(argv[0]) if argv and argv[0].endswith(".py") else argv[0], *argv[1:]]
    )
    return [
        f"# {title}",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}  ",
        f"Load average (1, 5, 15 min): {load()}  ",
        f"Software: Python {platform.python_version()}, {', '.join(versions) or 'no torch loaded'}  ",
        f"Command: `{' '.join([*env, command])}`",
        "",
    ]


def interval(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its 95 % CI (:func:`ci95`), for scripts that test or lay out the bounds
    themselves."""
    x = np.asarray(values, dtype=np.float64)
    m, h = float(x.mean()), ci95(x)
    return m, m - h, m + h


def mean_ci(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """``"0.612 [0.590, 0.634]"``."""
    m, low, high = interval(values)
    return f"{m:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def paired_delta(values: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """Mean of the per-episode differences with its 95 % CI, e.g. ``"+0.051 [+0.032, +0.070]"``: the
    episodes must be paired (same query, same seed, in the same order)."""
    m, low, high = paired_interval(values, baseline)
    return f"{m:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def table(header_cells: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> list[str]:
    """A markdown table; ``align`` gives one letter a column, ``"l"`` or ``"r"`` (e.g. ``"lrr"``; default: all
    left)."""
    align = "l" * len(header_cells) if align is None else align
    if len(align) != len(header_cells) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l'/'r' per column ({len(header_cells)}); got {align!r}.")
    lines = ["| " + " | ".join(header_cells) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write(path: str | Path | None, lines: Sequence[str]) -> str:
    """Write a result file (creating its folder; with ``path`` None, nothing is written), echo it, return its
    text."""
    text = "\n".join(lines).rstrip() + "\n"
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(text)
    return text
