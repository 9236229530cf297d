"""Agents for PromptLoop: an MLLM prompt-writing policy, baselines, and token-level GRPO / PPO trainers.

- :mod:`agents.mllm`: :class:`MLLMAgent` (any image-text-to-text model as a text-action policy);
- :mod:`agents.toy`: the shipped toy policy (a tiny Qwen2-VL for the toy world) and its pretraining script;
- :mod:`agents.baselines`: identity, fixed suffix, one-shot rewrite, random prompt bank;
- :mod:`agents.rollout`: episodes from a vector env, through the Gymnasium API only;
- :mod:`agents.openloop`: open-loop ("a priori") inference, all K prompts written before sampling;
- :mod:`agents.ppo`, :mod:`agents.grpo`: the algorithms; :mod:`agents.train`: the loop;
- :mod:`agents.config`: the run's settings; :mod:`agents.checkpoint`: verified atomic checkpoints;
- :mod:`agents.toy.scripted`: scripted toy-world policies (fixed rewrites, a preview-reading controller);
- :mod:`agents.evaluate`, :mod:`agents.cli`: eval tables and the ``promptloop`` command.
"""

from .baselines import FixedSuffix, Identity, OneShot, Policy, RandomBank, make_baseline
from .evaluate import EvalResult, evaluate, markdown_table
from .mllm import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, AgentError, MLLMAgent, Turn, parse_prompt
from .openloop import OpenLoop
from .rollout import Episode, annotate, collect
from .train import ConfigError, TrainConfig, train

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_USER_TEMPLATE",
    "AgentError",
    "ConfigError",
    "Episode",
    "EvalResult",
    "FixedSuffix",
    "Identity",
    "MLLMAgent",
    "OneShot",
    "OpenLoop",
    "Policy",
    "RandomBank",
    "TrainConfig",
    "Turn",
    "annotate",
    "collect",
    "evaluate",
    "make_baseline",
    "markdown_table",
    "parse_prompt",
    "train",
]
