"""The main job: train the toy policy with GRPO on PromptLoop-v0, then compare it with the identity baseline.

    python3 tasks.py demo [--updates 40] [--eval-n 200] [--out outputs/train_toy]

This is ``promptloop train`` with the default config (the shipped toy policy, a tiny Qwen2-VL, LoRA, K = 5
refinement points at random steps, 4 queries x 4 episodes per update), followed by ``promptloop eval`` on
held-out toy queries (the same env seeds for every row, K = 5 uniform refinement points; the agent sampled
at its temperature and answering greedily). A few minutes
on a laptop CPU. It prints the eval table and where the TensorBoard logs, sample images and agent are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agents.baselines import Identity
from agents.cli import _quiet_libraries
from agents.evaluate import eval_queries, evaluate, markdown_table
from agents.train import TrainConfig, load_agent, make_envs, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=TrainConfig.updates)
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--out", default="outputs/train_toy")
    args = parser.parse_args()
    _quiet_libraries()

    start = time.perf_counter()
    config = TrainConfig(updates=args.updates, out=args.out)
    print(f"training the toy policy with {config.algo.upper()} for {config.updates} updates "
          f"({config.num_envs} episodes each) on {config.env_id} ...", flush=True)  # fmt: skip
    result = train(config)
    minutes = (time.perf_counter() - start) / 60

    print(f"evaluating on {args.eval_n} held-out toy queries ...", flush=True)
    queries = eval_queries("toy-user-test", args.eval_n, seed=0)
    envs = make_envs(config.env_id, 25, **config.env_kwargs(schedule="uniform"))
    agent = load_agent(str(result["agent"]))
    table = markdown_table(
        {
            "identity (the query at every refinement)": evaluate(Identity(), envs, queries, seed=0),
            "trained toy policy (step-wise, previews), sampled": evaluate(agent, envs, queries, seed=0),
            "trained toy policy (step-wise, previews), greedy": evaluate(agent, envs, queries, seed=0, greedy=True),
        }
    )
    out = Path(args.out)
    (out / "eval.md").write_text(table + "\n")
    print()
    print(table)
    print()
    print(f"training took {minutes:.1f} min")
    print("(on the toy world's alignment score prompts have little to gain: benchmarks/results/learning_toy.md)")
    print(f"TensorBoard (scalars, preview strips, prompts): tensorboard --logdir {result['tensorboard']}")
    print(f"trained agent (LoRA adapter on the toy policy): {result['agent']}")
    print(f"eval table: {out / 'eval.md'}")


if __name__ == "__main__":
    main()
