"""The main job: train the toy policy with GRPO on PromptLoop-v0, then compare it with the identity baseline.

    python3 tasks.py demo [--updates 40] [--eval-n 200] [--out outputs/train_toy]

This is ``promptloop train`` with the default config (the shipped toy policy, a tiny Qwen2-VL pretrained on
generic image and text skills; LoRA; K = 5 refinement points at random steps; 4 queries x 4 episodes per
update, each group from one initial noise), followed by an evaluation on held-out user-style toy queries (the
same env seeds for every row, K = 5 uniform refinement points) of identity, the scripted open-loop rewrite and
closed-loop controller of ``benchmarks/toy_headroom.py``, the untrained policy, and the trained one (sampled at
its temperature and greedy). About three minutes on 2 CPU cores. It prints the eval table, a closing line that
says what the numbers mean, and where the TensorBoard logs and agent are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agents.baselines import Identity
from agents.cli import quiet_libraries
from agents.evaluate import eval_queries, evaluate, markdown_table, paired_interval
from agents.toy.scripted import scripted_references
from agents.train import TrainConfig, load_agent, make_envs, train


def paired(a, b) -> str:
    """Mean per-episode difference of two rows with its 95 % CI."""
    mean, low, high = paired_interval(a.rewards, b.rewards)
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=TrainConfig.updates)
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--out", default="outputs/train_toy")
    args = parser.parse_args()
    quiet_libraries()

    start = time.perf_counter()
    config = TrainConfig(updates=args.updates, out=args.out)
    print(f"training the toy policy with {config.algo.upper()} for {config.updates} updates "
          f"({config.num_envs} episodes each) on {config.env_id} ...", flush=True)  # fmt: skip
    result = train(config)
    minutes = (time.perf_counter() - start) / 60

    print(f"evaluating on {args.eval_n} held-out toy queries ...", flush=True)
    queries = eval_queries("toy-user-test", args.eval_n, seed=0)
    envs = make_envs(config.env_id, 25, **config.env_kwargs(schedule="uniform"))
    untrained, agent = load_agent("toy"), load_agent(str(result["agent"]))
    rows = {
        "identity (the query at every refinement)": evaluate(Identity(), envs, queries, seed=0),
        **{label: evaluate(policy, envs, queries, seed=0) for label, policy in scripted_references().items()},
        "toy policy, untrained (pretrained skills only), sampled": evaluate(untrained, envs, queries, seed=0),
        "toy policy after GRPO, sampled": evaluate(agent, envs, queries, seed=0),
        "toy policy after GRPO, greedy": evaluate(agent, envs, queries, seed=0, greedy=True),
    }
    table = markdown_table(rows)
    out = Path(args.out)
    (out / "eval.md").write_text(table + "\n")
    print()
    print(table)
    print()
    print(f"training took {minutes:.1f} min")
    names = list(rows)
    identity, closed, untrained_row, trained = (rows[names[i]] for i in (0, 2, 3, 4))
    _, low, high = paired_interval(trained.rewards, identity.rewards)
    verdict = "beats identity" if low > 0 else "is worse than identity" if high < 0 else "is level with identity"
    print(
        f"The trained agent (sampled) {verdict}: {paired(trained, identity)} (paired 95 % CI), from "
        f"{paired(untrained_row, identity)} before training; the scripted closed-loop controller gains "
        f"{paired(closed, identity)}, the room a policy has on this world (benchmarks/results/toy_headroom.md; "
        "the ablation: benchmarks/results/harness/ablation/ablation.md)."
    )
    _, low, high = paired_interval(trained.rewards, untrained_row.rewards)
    if low <= 0 <= high:
        print(
            f"Training left the agent level with its untrained self ({paired(trained, untrained_row)}); why, "
            "measured on the shipped world: benchmarks/results/grpo_clean_signal.md (how much signal each "
            "decision of the policy carries in the env) and benchmarks/results/harness/ablation/ablation.md."
        )
    print(f"TensorBoard (scalars, preview strips, prompts): tensorboard --logdir {result['tensorboard']}")
    print(f"trained agent (LoRA adapter on the toy policy): {result['agent']}")
    print(f"eval table: {out / 'eval.md'}")


if __name__ == "__main__":
    main()
