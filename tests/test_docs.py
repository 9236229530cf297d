"""The documentation site builds in strict mode: a broken link, a missing page or reference, or a malformed
docstring fails the build (``mkdocs build --strict``, as CI and ``mkdocs serve`` users run it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

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
        page = (site / "tutorials" / name / "index.html").read_text()
        assert '<img alt="output"' in page and f'href="../{name}.ipynb"' in page  # pictures, download link
    concepts = (site / "concepts" / "index.html").read_text()
    assert 'class="mermaid"' in concepts
    # The diagrams render offline: mermaid ships with the site (Material only fetches it from a CDN when absent).
    assert "assets/javascripts/mermaid.min.js" in concepts
    assert (site / "assets" / "javascripts" / "mermaid.min.js").stat().st_size > 1e6


def load_hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("promptloop_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_out_of_docs_go_to_published_pages_or_stay_broken():
    hooks = load_hooks()
    hooks._PUBLISHED["benchmarks/results/x.md"] = "benchmarks/results/x.md"
    hooks._PUBLISHED["examples/notebooks/n.ipynb"] = "tutorials/n.md"
    hooks._ORIGIN["tutorials/n.md"] = "examples/notebooks/n.ipynb"
    assert hooks._rewrite("../benchmarks/results/x.md#table", "index.md") == "benchmarks/results/x.md#table"
    assert hooks._rewrite("../../benchmarks/results/x.md", "api/agents.md") == "../benchmarks/results/x.md"
    assert hooks._rewrite("../examples/notebooks/n.ipynb", "tutorials.md") == "tutorials/n.md"
    assert hooks._rewrite("../../docs/concepts.md", "tutorials/n.md") == "../concepts.md"  # from a notebook
    assert hooks._rewrite("quickstart.md#install", "index.md") == "quickstart.md#install"
    # A file that is not published (on_files publishes every existing file a page links to) keeps its link,
    # which mkdocs then reports: an error under --strict.
    assert hooks._rewrite("../examples/demo.py", "index.md") == "../examples/demo.py"
    for target in ("https://arxiv.org/abs/2510.00430", "#anchor", "/absolute"):
        assert hooks._rewrite(target, "index.md") == target


def test_a_notebook_renders_as_markdown_with_its_outputs(tmp_path):
    import base64
    import json

    png = base64.b64encode(b"\x89PNG fake").decode()
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "print('a')",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "progress 1\rprogress 2\n"},
                {"output_type": "stream", "name": "stdout", "text": "done\n"},
                {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<Figure>"}},
                {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
                 "data": {"text/markdown": "| a |\n|---|", "text/plain": "<Markdown>"}},
            ],
        },
    ]  # fmt: skip
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    markdown, images = load_hooks().render_notebook(path, "n")
    assert "# Title\ntext" in markdown and "```python\nprint('a')\n```" in markdown
    assert "```text\nprogress 2\ndone\n```" in markdown  # one block, the carriage return honoured
    assert "![output](n/n_0.png)" in markdown and images == {"n_0.png": b"\x89PNG fake"}
    assert "| a |\n|---|" in markdown and "<Markdown>" not in markdown
