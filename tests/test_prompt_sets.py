"""Prompt sets: text, CSV, JSONL and Parquet files, `datasets` datasets, the hash-based train/eval split."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from promptloop_env.prompts import (
    PromptSetError,
    in_eval_split,
    load_queries,
    make_prompt_source,
)


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """`load_dataset` on local files writes Arrow caches: keep them in the test's folder."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return datasets


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_text_file_strips_drops_empty_and_dedupes(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("  a red circle \n\n   \na blue square\na red circle\n")
    assert load_queries(str(path)) == ["a red circle", "a blue square"]
    assert load_queries(path, dedupe=False) == ["a red circle", "a blue square", "a red circle"]
    assert load_queries(f"{path}?dedupe=false") == ["a red circle", "a blue square", "a red circle"]
    source = make_prompt_source(path)
    rng = np.random.default_rng(0)
    assert {source(rng) for _ in range(30)} == {"a red circle", "a blue square"}


def test_csv_default_and_named_columns(tmp_path):
    rows = [[1, "a cat", "oil"], [2, "", "ink"], [3, "a dog", ""]]
    path = write_csv(tmp_path / "c.csv", ["id", "caption", "style"], rows)
    assert load_queries(str(path)) == ["a cat", "a dog"]  # 'caption' found by default, the empty row dropped
    assert load_queries(f"{path}:style") == ["oil", "ink"]
    assert load_queries(path, column="style") == ["oil", "ink"]
    # 'prompt' wins over 'caption' when both exist
    both = write_csv(tmp_path / "b.csv", ["caption", "prompt"], [["c1", "p1"]])
    assert load_queries(str(both)) == ["p1"]


def test_csv_unknown_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["id", "description"], [[1, "a cat"]])
    with pytest.raises(PromptSetError, match=r"none of the default columns.*\['id', 'description'\]"):
        load_queries(str(path))
    with pytest.raises(PromptSetError, match=r"no column 'caption'; its columns: \['id', 'description'\]"):
        load_queries(f"{path}:caption")


def test_jsonl(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"text": "a cat", "n": 1}, {"text": "  a dog "}, {"n": 3}, {"text": "a cat"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_queries(str(path)) == ["a cat", "a dog"]
    with pytest.raises(PromptSetError, match=r"no column 'caption'; its columns: \['text', 'n'\]"):
        load_queries(f"{path}:caption")
    with pytest.raises(PromptSetError, match="Queries must be text; got int"):
        load_queries(f"{path}:n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(PromptSetError, match="line 2 is not JSON"):
        load_queries(str(bad))


def test_missing_file_and_empty_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a file"):
        make_prompt_source(str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="is not a file"):
        make_prompt_source(str(tmp_path / "nope.csv") + ":caption")
    empty = tmp_path / "e.txt"
    empty.write_text("\n  \n")
    with pytest.raises(PromptSetError, match="has no queries"):
        make_prompt_source(str(empty))
    with pytest.raises(PromptSetError, match="has no queries"):
        make_prompt_source(["", "  "])
    with pytest.raises(PromptSetError, match="only strings"):
        make_prompt_source(["a", 3])
    header_only = write_csv(tmp_path / "h.csv", ["prompt"], [])
    with pytest.raises(PromptSetError, match="has no queries"):
        make_prompt_source(str(header_only))
    with pytest.raises(PromptSetError, match="Unknown prompt set options"):
        make_prompt_source(f"{empty}?splitt=train")
    with pytest.raises(PromptSetError, match="own split"):
        make_prompt_source("toy-train?split=eval")


def test_split_is_fixed_disjoint_and_stable_when_the_set_grows(tmp_path):
    queries = [f"query number {i}" for i in range(400)]
    train = load_queries(queries, split="train")
    evals = load_queries(queries, split="eval")
    assert set(train).isdisjoint(evals) and len(train) + len(evals) == 400
    assert 0.05 < len(evals) / 400 < 0.15  # eval_fraction 0.1
    # The split depends on the text only: the same in another order, in a larger set, and as a spec option.
    bigger = load_queries(queries[::-1] + [f"other {i}" for i in range(100)], split="eval")
    assert set(evals) <= set(bigger)
    path = tmp_path / "q.txt"
    path.write_text("\n".join(queries))
    assert load_queries(f"{path}?split=eval") == evals
    assert load_queries(f"{path}?split=eval&eval_fraction=0.5") == [q for q in queries if in_eval_split(q, 0.5)]
    # Pinned values: a change of hash would move queries between the parts on users' machines.
    assert evals[:3] == ["query number 0", "query number 1", "query number 50"]
    with pytest.raises(PromptSetError, match="The eval part of .* is empty"):
        load_queries(["just one"], split="eval", eval_fraction=0.01)
    with pytest.raises(PromptSetError, match="split='test'"):
        load_queries(queries, split="test")
    with pytest.raises(PromptSetError, match="given twice"):
        load_queries(f"{path}?split=eval", split="train")


def test_saved_dataset_and_local_files_through_datasets(tmp_path, datasets_cache):
    datasets = datasets_cache
    rows = {"caption": ["a cat", "a dog", "a cat", " ", "a bird"], "best_image_uid": ["1", "2", "3", "4", "5"]}
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict(rows).save_to_disk(str(folder))
    assert load_queries(f"hf:{folder}") == ["a cat", "a dog", "a bird"]
    assert load_queries(f"hf:{folder}:best_image_uid?split=train")  # a column by name and a split
    with pytest.raises(PromptSetError, match=r"no column 'prompt'; its columns: \['caption', 'best_image_uid'\]"):
        load_queries(f"hf:{folder}:prompt")
    # A DatasetDict saved to disk: the dataset's own split by hf_split.
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(
        {"caption": ["a fish"], "best_image_uid": ["9"]})})  # fmt: skip
    dd.save_to_disk(str(tmp_path / "dd"))
    assert load_queries(f"hf:{tmp_path / 'dd'}?hf_split=validation") == ["a fish"]
    with pytest.raises(PromptSetError, match=r"no split 'test'; its splits: \['train', 'validation'\]"):
        load_queries(f"hf:{tmp_path / 'dd'}?hf_split=test")
    # A folder of Parquet files through load_dataset, and a Parquet file by path.
    parquet_dir = tmp_path / "pq"
    parquet_dir.mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(str(parquet_dir / "train-00000.parquet"))
    assert load_queries(f"hf:{parquet_dir}:caption") == ["a cat", "a dog", "a bird"]
    assert load_queries(str(parquet_dir / "train-00000.parquet")) == ["a cat", "a dog", "a bird"]
    # A folder of CSV files through load_dataset.
    csv_dir = tmp_path / "csvs"
    csv_dir.mkdir()
    write_csv(csv_dir / "train.csv", ["prompt"], [["a red car"], ["a blue car"]])
    source = make_prompt_source(f"hf:{csv_dir}")
    assert source.queries == ["a red car", "a blue car"]


def test_missing_hub_dataset_is_a_clear_error(datasets_cache, monkeypatch):
    monkeypatch.setattr(datasets_cache.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        load_queries("hf:promptloop-tests/no-such-dataset:caption")
