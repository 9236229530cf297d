#!/usr/bin/env python3
"""The project's two commands. Each creates (or reuses) the local virtual environment `.venv` first.

    python3 tasks.py demo    # the main job: train the toy policy with GRPO, then eval it against identity
    python3 tasks.py test    # ruff (lint and format check), then the test suite

Extra arguments go to the demo script or to pytest. The install is redone only when pyproject.toml or
requirements-dev.txt change (torch is pinned to 2.13.0 there, the CPU build, for development and CI).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".promptloop-install"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements-dev.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036  (tasks.py runs on the system Python)
        sys.exit(f"PromptLoop needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"creating the virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    print(
        "installing promptloop and its dependencies into .venv (first run or changed requirements)",
        flush=True,
    )
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "install", "-r", "requirements-dev.txt"], check=True, cwd=ROOT)
    STAMP.write_text(_fingerprint())


def run(args: list[str]) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")  # the demo and tests never download anything
    # transformers warns at import that torchvision is missing (its PIL fallbacks serve us); keep output clean.
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return subprocess.run(args, cwd=ROOT, env=env).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        print(__doc__)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    ensure_venv()
    if command == "demo":
        return run([str(PYTHON), "examples/train_toy.py", *extra])
    code = run([str(PYTHON), "-m", "ruff", "check", "."]) or run([str(PYTHON), "-m", "ruff", "format", "--check", "."])
    if code:
        return code
    # Serial on purpose: torch already uses every core, and xdist workers oversubscribe them (12x slower here).
    return run([str(PYTHON), "-m", "pytest", "-q", *extra])


if __name__ == "__main__":
    sys.exit(main())
