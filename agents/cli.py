"""The ``promptloop`` command.

    promptloop train [--config run.yaml] [--algo grpo] [--updates 40] [--out runs/toy] [--resume runs/toy] ...
    promptloop eval --agent identity --agent runs/toy/agent [--queries toy-user-test] [--eval-n 200] [--out table.md]
    promptloop bench {ablation,k-sweep,overopt,unseen-backbone} [--updates 30] [--eval-n 100] [--out folder]
    accelerate launch --num_processes 2 -m agents.cli train ...      (data-parallel over processes / GPUs)

``train`` takes every :class:`agents.train.TrainConfig` setting as a flag (``--queries-per-update 4``); a
config file (YAML, read with ``yaml.safe_load``, or JSON) sets the same names, and flags given on the command
line override it. ``eval`` runs each ``--agent`` (a baseline name: identity, suffix, random-bank; ``toy``;
or an agent folder such as a run's ``agent/``; ``open-loop:`` before ``toy`` or a folder evaluates that agent
open-loop, see :mod:`agents.openloop`) over the same queries and seeds and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig

__all__ = ["load_config", "main"]

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _field_type(f: dataclasses.Field) -> type:
    name = str(f.type).replace(" | None", "").strip()
    return _TYPES.get(name, str)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from defaults, then a YAML/JSON file, then ``overrides``; validated."""
    values: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        if str(path).endswith(".json"):
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}.")
    values.update(overrides or {})
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"Unknown settings {unknown}; known: {sorted(known)}.")
    for name, value in values.items():
        kind = _field_type(known[name])
        if value is not None and not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            raise ConfigError(f"Setting {name}={value!r} should be a {kind.__name__}.")
    config = TrainConfig(**values)
    config.validate()
    return config


def _train_parser(sub: Any) -> None:
    parser = sub.add_parser("train", help="train an agent with GRPO or PPO", argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file of settings (flags override it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, type=kind, help=help_text, metavar=kind.__name__.upper())


def _eval_parser(sub: Any) -> None:
    parser = sub.add_parser("eval", help="evaluate agents and baselines on a prompt set")
    parser.add_argument(
        "--agent",
        action="append",
        required=True,
        help="baseline name, 'toy', or agent folder; prefix 'open-loop:' to write all prompts before sampling",
    )
    parser.add_argument(
        "--queries", default="toy-user-test", help="prompt set (default: the toy world's held-out user-style queries)"
    )
    parser.add_argument("--eval-n", type=int, default=200, help="number of held-out queries (one episode each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the queries and env seeds")
    parser.add_argument("--env-id", default="PromptLoop-v0")
    parser.add_argument("--num-envs", type=int, default=25, help="episodes run at once")
    parser.add_argument("--num-inference-steps", type=int, default=20)
    parser.add_argument("--num-refinements", type=int, default=5)
    parser.add_argument("--schedule", default="uniform", help="refinement points at eval (paper: uniform)")
    parser.add_argument("--preview", default="full")
    parser.add_argument("--reward", default=None)
    parser.add_argument("--one-shot", action="store_true", help="agents act at the first refinement only")
    parser.add_argument("--greedy", action="store_true", help="agents answer greedily instead of sampling")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")


def load_policy(spec: str) -> Any:
    """A policy for ``eval --agent``: a baseline name, ``toy``, an agent folder, or ``open-loop:`` before one of
    the last two (the agent writes all its prompts before sampling, :class:`agents.openloop.OpenLoop`)."""
    from .baselines import BASELINES, make_baseline
    from .openloop import OPEN_LOOP_PREFIX, OpenLoop
    from .train import load_agent

    if spec.startswith(OPEN_LOOP_PREFIX):
        inner = spec[len(OPEN_LOOP_PREFIX) :]
        if inner in BASELINES:
            raise ConfigError(f"--agent {spec}: baselines never see previews, so they are open-loop already.")
        return OpenLoop(load_agent(inner))
    return make_baseline(spec) if spec in BASELINES else load_agent(spec)


def run_eval(args: argparse.Namespace) -> str:
    """Evaluate every ``--agent`` and return the Markdown table."""
    from .baselines import BASELINES
    from .evaluate import eval_queries, evaluate, markdown_table
    from .train import make_envs

    queries = eval_queries(args.queries, args.eval_n, args.seed)
    env_kwargs: dict[str, Any] = dict(
        num_inference_steps=args.num_inference_steps,
        num_refinements=args.num_refinements,
        schedule=args.schedule,
        preview=args.preview,
    )
    if args.reward:
        env_kwargs["reward"] = args.reward
    envs = make_envs(args.env_id, min(args.num_envs, args.eval_n), **env_kwargs)
    results = {}
    for spec in args.agent:
        policy = load_policy(spec)
        label = spec + (" (one-shot)" if args.one_shot and spec not in BASELINES else "")
        results[label] = evaluate(
            policy, envs, queries, seed=args.seed, one_shot=args.one_shot and spec not in BASELINES, greedy=args.greedy
        )
    envs.close()
    # Every agent ran the same queries with the same env seeds: paired differences from the first.
    table = markdown_table(results, baseline=next(iter(results)) if len(results) > 1 else None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return table


def quiet_libraries() -> None:
    """Loading bars and deprecation chatter of the libraries below would drown the run's own output."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(
        prog="promptloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _eval_parser(sub)
    from .bench import add_bench_parser

    add_bench_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from .train import train

            overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
            config = load_config(getattr(args, "config", None), overrides)
            result = train(config, progress=not getattr(args, "quiet", False))
            from accelerate import PartialState

            if PartialState().is_main_process:  # under `accelerate launch`, one report
                print(f"trained agent: {result['agent']}")
                print(f"TensorBoard:   tensorboard --logdir {result['tensorboard']}")
        elif args.command == "bench":
            from .bench import run_bench

            for kind, path in run_bench(args, sys.argv[1:] if argv is None else argv).items():
                print(f"{kind}: {path}")
        else:
            print(run_eval(args))
    except (ConfigError, CheckpointError) as error:
        print(f"promptloop {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
