"""Prompt sources: where an episode's query comes from when ``reset`` does not name one.

A prompt set is named by a *spec*, the same string in Python, on the command line and in config files:

| spec | queries |
|---|---|
| ``toy-train``, ``toy-test`` | the toy grammar's splits (random scenes with random phrasings) |
| ``toy-user-train``, ``toy-user-test`` | the same splits in users' style (rare synonyms and word orders) |
| ``prompts.txt`` | a text file, one query per line |
| ``captions.csv[:column]`` | a CSV file's column (default: ``prompt``, ``caption`` or ``text``) |
| ``captions.jsonl[:key]`` | a JSON Lines file's key (same default) |
| ``captions.parquet[:column]`` | a Parquet file's column, read through ``datasets`` |
| ``hf:<dataset>[:<column>]`` | a Hugging Face dataset through ``datasets`` (see below) |

A dataset is a hub id in the local cache, a folder written by ``save_to_disk``, or a folder of data files
(CSV, Parquet, JSON): the Pick-a-Pic v2 captions are ``hf:yuvalkirstain/pickapic_v2_no_images:caption``.

Any spec may end in options, ``?key=value&key=value``:

- ``split=train`` or ``split=eval`` keeps one part of a fixed train/eval split of the set's distinct queries, and
  ``eval_fraction=0.1`` sets the eval part's size. The split is hash-based: a query is in the eval part when the
  first 8 bytes of its BLAKE2b digest (UTF-8 text), read as an integer, are below ``eval_fraction * 2**64``. It
  therefore depends on nothing but the query text: it is the same across runs, machines and Python versions,
  and a query keeps its side when the set grows or is reordered.
- ``hf_split=validation`` picks the dataset's own split (default ``train``) and ``config=NAME`` its
  configuration, for ``hf:`` specs;
- ``dedupe=false`` keeps repeated queries (by default each distinct query appears once, so a caption that
  occurs 50 times in a dataset is drawn no more often than any other).

Every source strips whitespace and drops empty queries. ``datasets`` is needed only for ``hf:`` and Parquet
specs (``pip install "promptloop[datasets]"``) and is imported only then; nothing is downloaded unless the
environment allows it (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` unset) and the dataset is not cached.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

__all__ = [
    "DEFAULT_QUERIES",
    "PROMPT_COLUMNS",
    "PROMPT_SETS",
    "PromptSetError",
    "PromptSource",
    "in_eval_split",
    "load_queries",
    "make_prompt_source",
    "toy_queries",
]

#: Named prompt sets: the toy grammar's train split and its held-out split (a fixed hash of the full scene),
#: in random phrasings and in users' style (:func:`promptloop_env.toy.grammar.user_query`).
PROMPT_SETS = ("toy-train", "toy-test", "toy-user-train", "toy-user-test")

#: Columns (CSV, Parquet, datasets) or keys (JSONL) read when the spec names none, in this order.
PROMPT_COLUMNS = ("prompt", "caption", "text")

#: Default size of the eval part of a train/eval split.
DEFAULT_EVAL_FRACTION = 0.1

_OPTIONS = ("split", "eval_fraction", "hf_split", "config", "dedupe")
_FILE_SUFFIXES = (".txt", ".csv", ".jsonl", ".parquet")

DEFAULT_QUERIES: tuple[str, ...] = (
    "a red circle",
    "a blue square on the left",
    "a small yellow triangle",
    "a green tree next to a house",
    "a black cat",
    "a white bird in the sky",
    "a large orange star",
    "a purple flower",
)

PromptSource = Callable[[np.random.Generator], str]


class PromptSetError(ValueError):
    """A prompt set that cannot be read: unknown column, no queries left, a malformed spec or file."""


@dataclass(frozen=True)
class ToyQueries:
    """Draws queries of the toy grammar: a random scene of ``split`` written in ``style`` (``"caption"``: a
    random phrasing with each optional attribute left out at rate ``drop``; ``"user"``: users' style, see
    :func:`promptloop_env.toy.grammar.user_query`). A plain object, so envs holding it can be pickled."""

    split: str = "train"
    drop: float = 0.3
    style: str = "caption"

    def __call__(self, rng: np.random.Generator) -> str:
        from .toy.grammar import caption, random_scene, spec_of, split_of, user_query

        while True:
            scene = random_scene(rng)
            if split_of(spec_of(scene)) == self.split:
                if self.style == "user":
                    return user_query(scene, rng, drop=self.drop)
                return caption(scene, rng, drop=self.drop)


def toy_queries(split: str = "train", drop: float = 0.3, style: str = "caption") -> PromptSource:
    """Queries of the toy grammar: a random scene of ``split`` captioned with a random phrasing (``style=
    "caption"``), each optional attribute left out with probability ``drop`` (so queries leave things for a
    prompt to add), or written as users write (``style="user"``, sizes and background left out at ``drop``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if style not in ("caption", "user"):
        raise ValueError(f"style must be 'caption' or 'user'; got {style!r}.")
    return ToyQueries(split, drop, style)


def in_eval_split(query: str, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> bool:
    """Whether ``query`` falls in the eval part of the hash-based split (see the module's docstring)."""
    digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < eval_fraction * 2**64


def make_prompt_source(
    spec: Sequence[str] | str | os.PathLike | PromptSource | None,
    *,
    column: str | None = None,
    split: str | None = None,
    eval_fraction: float | None = None,
    dedupe: bool | None = None,
) -> PromptSource:
    """A function ``rng -> query`` drawing uniformly from a prompt set.

    Args:
        spec: a named set (``"toy-train"``, ``"toy-test"``), a spec string or path (a text, CSV, JSONL or
            Parquet file, or ``hf:<dataset>``; see the module's docstring), a list of queries, or a callable
            ``rng -> query`` (returned as it is). ``None``: a few built-in queries.
        column: the CSV/Parquet/dataset column or JSONL key to read (same as ``:column`` in the spec).
        split: ``"train"`` or ``"eval"``: one part of the fixed hash-based split (``None``: every query).
        eval_fraction: the eval part's share of the distinct queries (default 0.1).
        dedupe: keep each distinct query once (default ``True``).

    Returns:
        The source; for every set but the toy grammar, its queries are in ``source.queries``.

    Raises:
        FileNotFoundError: a file that does not exist.
        PromptSetError: an unknown column, a set with no queries (after the split), a malformed spec.
        ImportError: ``datasets`` missing for an ``hf:`` or Parquet spec.
    """
    if spec is None:
        spec = DEFAULT_QUERIES
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        return spec
    if isinstance(spec, str) and spec.partition("?")[0] in PROMPT_SETS:
        name, _, options = spec.partition("?")
        if options or split is not None or column is not None:
            raise PromptSetError(
                f"The toy sets have their own split ({', '.join(PROMPT_SETS)}): {spec!r} takes no options, "
                "column or split."
            )
        if name.startswith("toy-user-"):
            return toy_queries(name.removeprefix("toy-user-"), drop=0.2, style="user")
        return toy_queries(name.removeprefix("toy-"))
    queries = load_queries(spec, column=column, split=split, eval_fraction=eval_fraction, dedupe=dedupe)
    return _choice(queries)


def load_queries(
    spec: Sequence[str] | str | os.PathLike,
    *,
    column: str | None = None,
    split: str | None = None,
    eval_fraction: float | None = None,
    dedupe: bool | None = None,
) -> list[str]:
    """Every query of a prompt set, in the set's order (the arguments are those of :func:`make_prompt_source`;
    the toy grammar, an endless generator, is not a list and is refused)."""
    if isinstance(spec, str) and spec.partition("?")[0] in PROMPT_SETS:
        raise PromptSetError(f"{spec!r} is the toy grammar, a generator; use make_prompt_source({spec!r}).")
    options: dict[str, str] = {}
    label: str
    if isinstance(spec, (str, os.PathLike)):
        label = os.fspath(spec)
        text, options = _split_options(label)
        raw = _read_spec(text, column, options)
    else:
        label = "the list of queries"
        raw = list(spec)
        if not all(isinstance(q, str) for q in raw):
            bad = next(q for q in raw if not isinstance(q, str))
            raise PromptSetError(f"A list of queries must hold only strings; got {type(bad).__name__} {bad!r}.")
    split = _merge("split", split, options)
    eval_fraction = float(_merge("eval_fraction", eval_fraction, options, DEFAULT_EVAL_FRACTION))
    dedupe_value = _merge("dedupe", dedupe, options, True)
    if isinstance(dedupe_value, str):
        if dedupe_value.lower() not in ("true", "false", "1", "0"):
            raise PromptSetError(f"dedupe={dedupe_value!r} in {label!r}; expected true or false.")
        dedupe_value = dedupe_value.lower() in ("true", "1")
    if split not in (None, "train", "eval"):
        raise PromptSetError(f"split={split!r} for {label!r}; expected 'train', 'eval' or none (every query).")
    if not 0 < eval_fraction < 1:
        raise PromptSetError(f"eval_fraction={eval_fraction} for {label!r}; expected a number in (0, 1).")
    queries = _clean(raw, bool(dedupe_value))
    if not queries:
        raise PromptSetError(f"The prompt set {label!r} has no queries (every entry is empty or blank).")
    if split is not None:
        queries = [q for q in queries if in_eval_split(q, eval_fraction) == (split == "eval")]
        if not queries:
            raise PromptSetError(
                f"The {split} part of {label!r} is empty (eval_fraction={eval_fraction}); the set is too small "
                "for this split: use a larger set or another eval_fraction."
            )
    return queries


def _merge(name: str, value: Any, options: dict[str, str], default: Any = None) -> Any:
    if name in options:
        if value is not None and str(value) != options[name]:
            raise PromptSetError(f"{name} is given twice with different values: {value!r} and {options[name]!r}.")
        return options[name]
    return default if value is None else value


def _split_options(text: str) -> tuple[str, dict[str, str]]:
    """``"spec?key=value&..."`` -> ``("spec", {key: value})``; a path that exists is never split."""
    if "?" not in text or os.path.exists(text):
        return text, {}
    base, _, query = text.rpartition("?")
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if not pairs:
        raise PromptSetError(f"{text!r}: expected options as ?key=value&key=value after the set.")
    options = dict(pairs)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise PromptSetError(f"Unknown prompt set options {unknown} in {text!r}; known: {', '.join(_OPTIONS)}.")
    return base, options


def _read_spec(text: str, column: str | None, options: dict[str, str]) -> list[Any]:
    if text.startswith("hf:"):
        return _read_dataset(text, column, options)
    for key in ("hf_split", "config"):
        if key in options:
            raise PromptSetError(f"The option {key} applies to hf: specs only; got it for {text!r}.")
    path, spec_column = _path_and_column(text)
    column = _merge_column(column, spec_column, text)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, column)
    if suffix == ".jsonl":
        return _read_jsonl(path, column)
    if suffix == ".parquet":
        return _read_with_datasets("parquet", path, column)
    if column is not None:
        raise PromptSetError(
            f"{text!r}: a column applies to CSV, JSONL, Parquet and hf: sets; {path.name} is read as a text file "
            "(one query per line)."
        )
    return path.read_text(encoding="utf-8").splitlines()


def _path_and_column(text: str) -> tuple[Path, str | None]:
    """``file.csv:column`` -> the file and the column; the whole text when it is an existing file."""
    if os.path.isfile(text):
        return Path(text), None
    base, sep, column = text.rpartition(":")
    if sep and os.path.isfile(base) and column and "/" not in column and "\\" not in column:
        return Path(base), column
    raise FileNotFoundError(
        f"The prompt set {text!r} is not a file. Expected a named set ({', '.join(PROMPT_SETS)}), a text file "
        "(one query per line), a CSV/JSONL/Parquet file with an optional ':column', 'hf:<dataset>[:column]', "
        "a list of queries, or a callable rng -> query."
    )


def _merge_column(column: str | None, spec_column: str | None, text: str) -> str | None:
    if column is not None and spec_column is not None and column != spec_column:
        raise PromptSetError(f"Two columns for {text!r}: {spec_column!r} in the spec and column={column!r}.")
    return column if column is not None else spec_column


def _pick_column(available: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column not in available:
            raise PromptSetError(f"{where} has no column {column!r}; its columns: {list(available)}.")
        return column
    for name in PROMPT_COLUMNS:
        if name in available:
            return name
    raise PromptSetError(
        f"{where} has none of the default columns {list(PROMPT_COLUMNS)}; its columns: {list(available)}. "
        "Name one, e.g. 'file.csv:my_column' or 'hf:dataset:my_column'."
    )


def _read_csv(path: Path, column: str | None) -> list[Any]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise PromptSetError(f"The CSV file {os.fspath(path)!r} is empty; expected a header row and queries.")
        name = _pick_column(reader.fieldnames, column, f"The CSV file {os.fspath(path)!r}")
        return [row.get(name) or "" for row in reader]


def _read_jsonl(path: Path, column: str | None) -> list[Any]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PromptSetError(f"{os.fspath(path)!r} line {number} is not JSON: {err.msg}.") from err
            if not isinstance(row, dict):
                raise PromptSetError(
                    f"{os.fspath(path)!r} line {number} is a {type(row).__name__}; expected one object per line."
                )
            rows.append(row)
    if not rows:
        raise PromptSetError(f"The JSONL file {os.fspath(path)!r} has no records.")
    keys = list(dict.fromkeys(key for row in rows for key in row))
    name = _pick_column(keys, column, f"The JSONL file {os.fspath(path)!r}")
    return [row.get(name) for row in rows]


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "Hub datasets and Parquet prompt sets are read with the `datasets` library, which is not installed: "
            "pip install 'promptloop[datasets]' (or: pip install datasets)."
        ) from err
    return datasets


def _read_with_datasets(builder: str, path: Path, column: str | None) -> list[Any]:
    datasets = _import_datasets()
    data = datasets.load_dataset(builder, data_files=os.fspath(path), split="train")
    name = _pick_column(data.column_names, column, f"The {builder} file {os.fspath(path)!r}")
    return list(data[name])


def _read_dataset(text: str, column: str | None, options: dict[str, str]) -> list[Any]:
    body = text.removeprefix("hf:")
    # "owner/name:column"; a local folder may itself hold ':' (then it is taken whole).
    if os.path.isdir(body):
        name, spec_column = body, None
    else:
        name, sep, spec_column = body.partition(":")
        spec_column = spec_column if sep else None
    if not name:
        raise PromptSetError(f"{text!r}: expected 'hf:<dataset id or folder>[:column]'.")
    column = _merge_column(column, spec_column or None, text)
    datasets = _import_datasets()
    hf_split = options.get("hf_split", "train")
    try:
        if os.path.isdir(name) and _is_saved_dataset(Path(name)):
            data = datasets.load_from_disk(name)
        else:
            data = datasets.load_dataset(name, options.get("config"), split=hf_split)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"The dataset {name!r} is not available: not a local folder and not in the local Hugging Face cache "
            f"({type(err).__name__}: {err}). Download it once where the hub is reachable "
            f"(`hf download --repo-type dataset {name}`), or point to a folder written by `save_to_disk`."
        ) from err
    except ConnectionError as err:  # offline and not cached
        raise FileNotFoundError(
            f"The dataset {name!r} is not in the local Hugging Face cache and cannot be downloaded ({err}). "
            f"Download it once where the hub is reachable (`hf download --repo-type dataset {name}`)."
        ) from err
    if isinstance(data, datasets.DatasetDict):
        if hf_split not in data:
            raise PromptSetError(f"The dataset {name!r} has no split {hf_split!r}; its splits: {list(data)}.")
        data = data[hf_split]
    selected = _pick_column(data.column_names, column, f"The dataset {name!r}")
    return list(data.select_columns([selected])[selected])


def _is_saved_dataset(folder: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def _clean(raw: Iterable[Any], dedupe: bool) -> list[str]:
    """Strip every query, drop empty ones (and ``None``), keep the first of each repeated query."""
    queries = []
    for item in raw:
        if item is None:
            continue
        if not isinstance(item, str):
            raise PromptSetError(f"Queries must be text; got {type(item).__name__} {item!r}.")
        query = item.strip()
        if query:
            queries.append(query)
    return list(dict.fromkeys(queries)) if dedupe else queries


@dataclass(frozen=True)
class QueryList:
    """Draws uniformly from a fixed list of ``queries`` (a plain object, so envs holding it can be pickled)."""

    queries: list[str]

    def __call__(self, rng: np.random.Generator) -> str:
        return self.queries[int(rng.integers(len(self.queries)))]


def _choice(queries: list[str]) -> PromptSource:
    return QueryList(queries)
