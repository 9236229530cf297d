"""Every committed training config loads and validates through the CLI's loader, and names things that exist."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import pytest

import promptloop_env  # noqa: F401  (registers the env ids)
from agents.cli import load_config
from agents.train import TrainConfig
from promptloop_env.prompts import PROMPT_SETS, _split_options
from promptloop_env.rewards import reward_names

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"paper_sd15.yaml", "paper_sdxl.yaml", "toy.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path):
    import yaml

    unknown = [name for name in yaml.safe_load(path.read_text()) if name not in FIELDS]
    assert not unknown, f"{path.name} sets {unknown}, which TrainConfig does not have"
    config = load_config(path)
    assert config.algo == "grpo" and config.num_refinements == 5 and config.schedule == "random"
    assert config.env_id in gym.registry
    assert config.reward is None or config.reward in reward_names()
    if config.queries not in PROMPT_SETS:
        base, options = _split_options(config.queries)
        assert base.startswith("hf:") and options == {"split": "train"}
    if config.agent != "toy":
        assert config.agent == "Qwen/Qwen2.5-VL-3B-Instruct" and config.mixed_precision == "bf16"
        assert config.gradient_checkpointing is True


def test_preview_settings():
    for preview in ("full", "none", "tiny", "tiny:madebyollin/taesd", "linear", "linear:factors.json"):
        load_config(None, {"preview": preview})
    for preview in ("sharp", "tiny:", "full:x", "none:y"):
        with pytest.raises(ValueError, match="preview="):
            load_config(None, {"preview": preview})
