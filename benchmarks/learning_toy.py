"""Learning on the toy world: the paper's ablation in miniature, and training throughput.

    python benchmarks/learning_toy.py                      # all runs (about 70 minutes on 2 CPU cores)
    python benchmarks/learning_toy.py --updates 5 --eval-n 50 --out /tmp/quick.md   # a smoke run

Every policy is evaluated on the same held-out toy queries (``toy-test``) with the same env seeds, K = 5
uniform refinement points, T = 20, reward ``toy_alignment``: identity (the query at every refinement), the
untrained (supervised-only) toy policy, and the toy policy trained with RL as a one-shot rewriter, step-wise
with previews, and step-wise with previews disabled (``preview="none"``), with GRPO; and step-wise with
previews with PPO. Each training run has the same budget of updates (16 episodes each); its wall time is
reported. The throughput section measures, in separate processes, the reference log-prob pass and peak memory
with the reference as the LoRA model with its adapter disabled vs as a separate copy of the base model.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = {
    # name: (TrainConfig settings, eval one_shot, eval preview)
    "grpo-stepwise": (dict(algo="grpo"), False, "full"),
    "grpo-one-shot": (dict(algo="grpo", one_shot=True), True, "full"),
    "grpo-stepwise-no-preview": (dict(algo="grpo", preview="none"), False, "none"),
    "ppo-stepwise": (dict(algo="ppo", epochs=2, minibatches=2), False, "full"),
}


def reference_cost(mode: str) -> None:
    """Child process: peak RSS and time of reference log-probs, adapter disabled vs a separate model."""
    import copy

    import torch

    from agents.mllm import MLLMAgent
    from agents.tiny import tiny_qwen2_vl
    from promptloop_env.toy.grammar import vocabulary

    torch.manual_seed(0)
    # A mid-sized Qwen2-VL (about 30 M parameters) so that the model, not the interpreter, dominates memory.
    model, tokenizer, image_processor = tiny_qwen2_vl(vocabulary(), hidden_size=512, num_layers=8)
    agent = MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, max_new_tokens=16)
    separate = copy.deepcopy(model) if mode == "separate" else None
    agent.add_lora(r=8)
    rng = np.random.default_rng(0)
    obs = {
        "preview": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
        "query": ("a small red circle on the left",) * 16,
        "prompt": ("a red circle",) * 16,
        "progress": np.full((16, 1), 0.25),
    }
    turns = agent.generate(obs)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        with torch.no_grad():
            if separate is None:
                agent.reference(turns)
            else:
                reference = MLLMAgent(separate, tokenizer=tokenizer, image_processor=image_processor)
                reference.score(turns)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters()) + (
        sum(p.numel() for p in separate.parameters()) if separate is not None else 0
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": float(np.median(times)), "peak_mb": peak_mb, "params": params}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=250, help="updates per training run (16 episodes each)")
    parser.add_argument("--eval-n", type=int, default=400, help="held-out queries per evaluation")
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--work", default="outputs/learning_toy", help="where the runs' folders go")
    parser.add_argument("--out", default="benchmarks/results/learning_toy.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reference_cost(args.child)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from agents.baselines import Identity
    from agents.bench import tb_scalars, train_agent
    from agents.cli import _quiet_libraries
    from agents.evaluate import eval_queries, evaluate, markdown_table
    from agents.train import load_agent, make_envs

    _quiet_libraries()
    work = ROOT / args.work
    queries = eval_queries("toy-test", args.eval_n, seed=0)
    envs = {p: make_envs("PromptLoop-v0", 25, schedule="uniform", preview=p) for p in ("full", "none")}
    results = {}
    notes = []

    def write() -> None:
        lines = [
            f"# Learning on the toy world ({datetime.date.today().isoformat()})",
            "",
            f"`python benchmarks/learning_toy.py --updates {args.updates} --eval-n {args.eval_n}` on this machine's"
            " CPU (2 cores). Eval: held-out `toy-test` queries, the same env seeds for every policy, T = 20,"
            " K = 5 uniform refinement points, reward `toy_alignment`; agents sample at their temperature (1.5),"
            " or answer greedily (rows marked greedy).",
            " Training: the default `promptloop train` config (4 queries x G = 4 episodes per update, random"
            f" refinement points, LoRA r = 8, lr 1e-3, KL 0.04), {args.updates} updates per run.",
            "",
            markdown_table(results),
            "",
            *notes,
        ]
        path = ROOT / args.out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    results["identity"] = evaluate(Identity(), envs["full"], queries, seed=0)
    untrained = load_agent("toy")
    results["toy policy, untrained (step-wise)"] = evaluate(untrained, envs["full"], queries, seed=0)
    results["toy policy, untrained (step-wise), greedy"] = evaluate(
        untrained, envs["full"], queries, seed=0, greedy=True
    )
    write()
    for name in args.runs:
        settings, one_shot, preview = RUNS[name]
        run = train_agent(name, work, updates=args.updates, checkpoint_every=max(args.updates // 4, 1), **settings)
        agent = load_agent(str(run.agent))
        results[name] = evaluate(agent, envs[preview], queries, seed=0, one_shot=one_shot)
        results[name + ", greedy"] = evaluate(agent, envs[preview], queries, seed=0, one_shot=one_shot, greedy=True)
        eps = tb_scalars(run.tensorboard, "charts/episodes_per_second")[1]
        tok = tb_scalars(run.tensorboard, "charts/tokens_per_second")[1]
        ret = tb_scalars(run.tensorboard, "charts/episodic_return")[1]
        first, last = np.mean(ret[: max(len(ret) // 10, 1)]), np.mean(ret[-max(len(ret) // 10, 1) :])
        notes.append(
            f"- `{name}`: {run.minutes:.1f} min; median {np.median(eps):.2f} episodes/s, "
            f"{np.median(tok):.0f} agent tokens/s; training return {first:.3f} (first 10 % of updates) -> "
            f"{last:.3f} (last 10 %)."
        )
        write()
    notes += ["", "## Reference policy: adapter disabled vs a separate model", ""]
    notes += ["| reference | parameters held | median seconds per reference pass (16 turns) | peak RSS MB |"]
    notes += ["|---|---|---|---|"]
    for mode in ("adapter-disabled", "separate"):
        out = (
            subprocess.run(
                [sys.executable, __file__, "--child", mode], check=True, capture_output=True, text=True, cwd=ROOT
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        row = json.loads(out)
        notes.append(f"| {mode} | {row['params'] / 1e6:.1f} M | {row['seconds']:.3f} | {row['peak_mb']:.0f} |")
    write()
    print((ROOT / args.out).read_text())


if __name__ == "__main__":
    main()
