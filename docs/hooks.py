"""MkDocs hooks: publish repository files the docs link to, render the tutorial notebooks as pages, tidy roles.

The Markdown sources link to the committed benchmark results with relative paths that work on GitHub
(``../benchmarks/results/learning_toy.md``), outside ``docs_dir``. Here those results become pages of the site
(the committed files themselves, so every number lives in one place) and such links are rewritten to them.
The notebooks under ``examples/notebooks/`` become pages under ``tutorials/`` with their committed outputs
(text, tables, images) and a download link to the ``.ipynb``. Any other repository file a page links to
(``../examples/demo.py``) is published as it is under ``repo/``. A link to a file that does not exist is left
as it is, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
#: Repository folders whose files (Markdown results and their images) are published at the same path.
MIRRORED = ("benchmarks/results",)
NOTEBOOKS = "examples/notebooks"

# virtual src_uri -> repository path of the file it comes from (for resolving the links inside it)
_ORIGIN: dict[str, str] = {}
# repository path -> virtual src_uri
_PUBLISHED: dict[str, str] = {}

_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _add(files: Files, config, uri: str, origin: str, **source) -> None:
    files.append(File.generated(config, uri, **source))
    _ORIGIN[uri] = origin
    _PUBLISHED[origin] = uri


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def render_notebook(path: Path, stem: str) -> tuple[str, dict[str, bytes]]:
    """A notebook as Markdown (code cells fenced, outputs below them) and its output images by file name."""
    notebook = json.loads(path.read_text())
    # Raw HTML: a Markdown link to the notebook would be rewritten to its rendered page (directory URLs: the page
    # is tutorials/<stem>/, the file tutorials/<stem>.ipynb).
    parts = [f'<a href="../{path.name}" download>Download the notebook</a> (`{NOTEBOOKS}/{path.name}`)\n']
    images: dict[str, bytes] = {}
    for cell in notebook["cells"]:
        source = _text(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":
            parts.append(source)
            continue
        if cell["cell_type"] != "code" or not source:
            continue
        parts.append(f"```python\n{source}\n```")
        stream = ""  # consecutive stream outputs are one block; a carriage return overwrites its line
        for output in [*cell.get("outputs", []), {"output_type": "end"}]:
            kind = output["output_type"]
            if kind == "stream":
                stream += _ANSI.sub("", _text(output["text"]))
                continue
            lines = [line.rsplit("\r", 1)[-1] for line in stream.rstrip().split("\n")]
            if any(lines):
                parts.append("```text\n" + "\n".join(lines) + "\n```")
            stream = ""
            if kind == "error":
                parts.append("```text\n" + _ANSI.sub("", "\n".join(output["traceback"])) + "\n```")
            elif kind in ("display_data", "execute_result"):
                data = output["data"]
                if "image/png" in data:
                    name = f"{stem}_{len(images)}.png"
                    images[name] = base64.b64decode(_text(data["image/png"]))
                    parts.append(f"![output]({stem}/{name})")
                elif "text/markdown" in data:
                    parts.append(_text(data["text/markdown"]))
                elif "text/html" in data:
                    parts.append(_text(data["text/html"]))
                elif "text/plain" in data:
                    parts.append(f"```text\n{_text(data['text/plain']).rstrip()}\n```")
    return "\n\n".join(parts) + "\n", images


def on_files(files: Files, config) -> Files:
    for folder in MIRRORED:
        for path in sorted((ROOT / folder).glob("*")):
            if path.suffix in (".md", ".png", ".svg", ".jpg"):
                _add(files, config, f"{folder}/{path.name}", f"{folder}/{path.name}", abs_src_path=str(path))
    for path in sorted((ROOT / NOTEBOOKS).glob("*.ipynb")):
        markdown, images = render_notebook(path, path.stem)
        origin = f"{NOTEBOOKS}/{path.name}"
        _add(files, config, f"tutorials/{path.stem}.md", origin, content=markdown)
        files.append(File.generated(config, f"tutorials/{path.name}", abs_src_path=str(path)))
        for name, data in images.items():
            files.append(File.generated(config, f"tutorials/{path.stem}/{name}", content=data))
        _PUBLISHED[origin] = f"tutorials/{path.stem}.md"
    _publish_linked(files, config)
    return files


def _publish_linked(files: Files, config) -> None:
    """Publish, under ``repo/``, the other repository files that pages link to (``../examples/demo.py``), and
    those that the published Markdown files link to in turn; a link to a file that does not exist stays broken."""
    todo = [(_ORIGIN.get(f.src_uri, f"docs/{f.src_uri}"), f.content_string) for f in files.documentation_pages()]
    while todo:
        origin, text = todo.pop()
        for match in _LINK.finditer(text):
            target = match.group(2).partition("#")[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:|^/", target):
                continue
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(origin), target))
            path = ROOT / resolved
            if resolved.startswith(("../", "docs/", ".")) or resolved in _PUBLISHED or not path.is_file():
                continue
            _add(files, config, f"repo/{resolved}", resolved, abs_src_path=str(path))
            if path.suffix == ".md":
                todo.append((resolved, path.read_text()))


def _rewrite(target: str, page_uri: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
        return target
    path, hash_, anchor = target.partition("#")
    origin = _ORIGIN.get(page_uri, f"docs/{page_uri}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(origin), path))
    if resolved.startswith("docs/"):
        uri = resolved[len("docs/") :]
    elif resolved in _PUBLISHED:
        uri = _PUBLISHED[resolved]
    else:
        return target  # unpublished: mkdocs reports it (an error under --strict)
    return posixpath.relpath(uri, posixpath.dirname(page_uri) or ".") + hash_ + anchor


def on_page_markdown(markdown: str, page, config, files) -> str:
    uri = page.file.src_uri
    return _LINK.sub(lambda m: m.group(1) + _rewrite(m.group(2), uri) + m.group(3), markdown)


_SPHINX_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|obj|exc):(?=<code)")


def on_page_content(html: str, page, config, files) -> str:
    # Docstrings name objects with Sphinx roles (:class:`X`); show them as the code they wrap.
    return _SPHINX_ROLE.sub("", html)
