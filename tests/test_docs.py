"""The documentation site builds in strict mode: a broken link, a missing page or reference, or a malformed
docstring fails the build (``mkdocs build --strict``, as CI and ``mkdocs serve`` users run it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("material")

ROOT = Path(__file__).resolve().parent.parent


def test_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-4000:]}"
    # The generated parts are there: the API reference from docstrings, the published benchmark results (with
    # the links of the Markdown sources rewritten to them), the tutorials rendered with their pictures.
    api = (site / "api" / "promptloop_env" / "index.html").read_text()
    assert "PromptLoopEnv" in api and "Action Space" in api
    assert "MLLMAgent" in (site / "api" / "agents" / "index.html").read_text()
    assert "benchmarks/results/learning_toy/" in (site / "agents" / "index.html").read_text()
    title = (ROOT / "benchmarks" / "results" / "learning_toy.md").read_text().splitlines()[0].lstrip("# ")
    assert title in (site / "benchmarks" / "results" / "learning_toy" / "index.html").read_text()
    assert (site / "benchmarks" / "results" / "toy_identity_grid.png").is_file()
    for name in ("01_quickstart", "02_your_own_agent", "03_train_grpo"):
        assert (site / "tutorials" / f"{name}.ipynb").is_file()
        assert '<img alt="output"' in (site / "tutorials" / name / "index.html").read_text()
    assert 'class="mermaid"' in (site / "concepts" / "index.html").read_text()
