"""How fast does our GRPO move a toy policy's rewrite when the reward is clean? A learning check of the trainer's
maths and settings, apart from the diffusion model's noise.

    python benchmarks/grpo_clean_signal.py --out benchmarks/results/grpo_clean_signal.md
    python benchmarks/grpo_clean_signal.py --agent /tmp/policy --settings 1e-3,0.04,4,4 --updates 50
    python benchmarks/grpo_clean_signal.py --measure toy,runs/toy/agent     # the shares of trained agents only

The toy policy rewrites two-object user-style queries (train split) at a first refinement point (blank preview,
as :mod:`toy_policy_probe` asks it); the reward reads the rewrite's text alone: 1 if it keeps the query's meaning
(it parses to the query's scene, in either order) plus 1 if it names the query's second object first (the one
decision that pays on the toy world, ``toy_policy_probe.md``). Updates are :func:`agents.grpo.grpo_update` on
groups of G rewrites of one query, LoRA as ``promptloop train`` adds it. Before and after, and every
``--every`` updates, the sampled (and at the end greedy) shares on 200 held-out test-split queries: meaning kept,
second object first, both. Each setting starts from the same policy and seed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  benchmarks/report.py
from toy_policy_probe import first_colour, first_prompt_observations, keeps_meaning  # noqa: E402

from agents.grpo import GRPOSettings, grpo_update  # noqa: E402
from agents.mllm import MLLMAgent  # noqa: E402
from agents.rollout import Episode, annotate  # noqa: E402
from agents.toy import TOY_POLICY_DIR  # noqa: E402
from promptloop_env.toy.grammar import sample_queries  # noqa: E402


def shares(agent: MLLMAgent, queries: list[str], greedy: bool = False) -> dict[str, float]:
    """Share of rewrites that keep the meaning, name the second object first, and both."""
    obs = first_prompt_observations(queries)
    out = [t.prompt for i in range(0, len(obs), 50) for t in agent.generate(obs[i : i + 50], greedy=greedy)]
    keep = np.array([keeps_meaning(q, p) for q, p in zip(queries, out, strict=True)])
    second = np.array([first_colour(q, p) == "second" for q, p in zip(queries, out, strict=True)])
    return {"keep": keep.mean(), "second": second.mean(), "both": (keep & second).mean()}


def reward(query: str, prompt: str) -> float:
    return float(keeps_meaning(query, prompt)) + float(first_colour(query, prompt) == "second")


def run(agent_dir: str, lr: float, kl: float, q: int, g: int, updates: int, every: int, seed: int) -> dict:
    torch.manual_seed(seed)
    agent = MLLMAgent.from_pretrained(agent_dir)
    agent.add_lora(r=8, alpha=16)
    optimizer = torch.optim.AdamW(agent.trainable_parameters(), lr=lr)
    train = sample_queries(2000, "train", seed, num_objects=2, style="user")
    test = sample_queries(200, "test", seed + 1, num_objects=2, style="user")
    settings = GRPOSettings(group_size=g, kl_coef=kl)
    rng = np.random.default_rng(seed)
    curve = [(0, shares(agent, test))]
    kls: list[float] = []
    start = time.perf_counter()
    for update in range(1, updates + 1):
        queries = [train[i] for i in rng.integers(0, len(train), q) for _ in range(g)]
        episodes = []
        for query, turn in zip(queries, agent.generate(first_prompt_observations(queries)), strict=True):
            episodes.append(Episode(query=query, seed=0, turns=[turn], reward=reward(query, turn.prompt)))
        annotate(agent, episodes)
        kls.append(grpo_update(agent, episodes, optimizer, settings, rng)["losses/kl"])
        if update % every == 0 or update == updates:
            curve.append((update, shares(agent, test)))
    minutes = (time.perf_counter() - start) / 60
    return {"curve": curve, "greedy": shares(agent, test, greedy=True), "max_kl": max(kls), "minutes": minutes}


def env_signal(agent_dir: str, updates: int, group_size: int, seed: int) -> list[list[str]]:
    """The same decisions' GRPO signal in the env: the untrained policy's episodes on two-object train queries
    (the ``promptloop train`` env: random refinement points, one initial noise per group of ``group_size``), and
    the mean group advantage of the episodes that make each decision, with its 95 % CI; beside it, the same
    difference under the clean reward of the episodes' first rewrites (:func:`reward`), grouped the same way."""
    from agents.config import TrainConfig, load_agent, make_envs
    from agents.evaluate import ci95
    from agents.grpo import group_advantages
    from agents.rollout import collect

    torch.manual_seed(seed)
    agent = load_agent(agent_dir)
    config = TrainConfig()
    queries_per_update = 4
    envs = make_envs(config.env_id, queries_per_update * group_size, **config.env_kwargs())
    train = sample_queries(2000, "train", seed, num_objects=2, style="user")
    rng = np.random.default_rng(seed)
    decisions: dict[str, list[bool]] = {k: [] for k in ("keep", "second", "all second", "all first")}
    advantages: list[float] = []
    clean: list[float] = []
    for _ in range(updates):
        distinct = [train[i] for i in rng.integers(0, len(train), queries_per_update)]
        seeds = [int(x) for x in rng.integers(0, 2**31 - 1, queries_per_update)]
        queries = [q for q in distinct for _ in range(group_size)]
        episodes = collect(agent, envs, queries, [x for x in seeds for _ in range(group_size)])
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float32)
        advantages += group_advantages(rewards, group_size).tolist()
        texts = torch.tensor([reward(q, e.turns[0].prompt) for q, e in zip(queries, episodes, strict=True)])
        clean += group_advantages(texts.float(), group_size).tolist()
        for q, e in zip(queries, episodes, strict=True):
            order = [first_colour(q, t.prompt) for t in e.turns]
            decisions["keep"].append(keeps_meaning(q, e.turns[0].prompt))
            decisions["second"].append(order[0] == "second")
            decisions["all second"].append(all(o == "second" for o in order))
            decisions["all first"].append(all(o == "first" for o in order))
    envs.close()
    a, c = np.array(advantages), np.array(clean)
    labels = {
        "keep": "first rewrite keeps the meaning",
        "second": "first rewrite names the second object first",
        "all second": "every rewrite names the second object first",
        "all first": "every rewrite names the first object first",
    }
    rows = [
        ["all episodes", f"{len(a)}", f"zero advantage (a group of equal rewards): {np.mean(a == 0):.2f}", "", "", ""]
    ]
    kept, second = np.array(decisions["keep"]), np.array(decisions["second"])
    splits = [(label, np.array(decisions[key]), np.ones(len(a), bool)) for key, label in labels.items()]
    # The reorder pays only if the rewrite also keeps the meaning: the same decision within each half.
    splits += [
        ("first rewrite names the second object first, among those that keep the meaning", second, kept),
        ("first rewrite names the second object first, among those that lose it", second, ~kept),
    ]
    for label, decided, among in splits:
        mask, rest = decided & among, ~decided & among
        yes, no = a[mask], a[rest]
        rows.append(
            [
                label,
                f"{mask.sum()} of {among.sum()}",
                f"{yes.mean():+.3f} +- {ci95(yes):.3f}",
                f"{no.mean():+.3f} +- {ci95(no):.3f}",
                f"{yes.mean() - no.mean():+.3f}",
                f"{c[mask].mean() - c[rest].mean():+.3f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default=str(TOY_POLICY_DIR), help="the policy (an agent folder)")
    parser.add_argument(
        "--settings",
        default="1e-3,0.04,4,4;1e-3,0.04,4,8;2e-3,0.04,4,8;3e-3,0.04,4,4",
        help="';'-separated lr,kl_coef,queries_per_update,group_size",
    )
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the table to this Markdown file")
    parser.add_argument(
        "--env-signal", type=int, default=0, help="also measure the decisions' signal in the env over N updates (G = 8)"
    )
    parser.add_argument(
        "--measure", default=None, help="comma-separated agents ('toy' or folders): print their shares, train nothing"
    )
    args = parser.parse_args()
    if args.measure:
        from agents.config import load_agent

        test = sample_queries(200, "test", args.seed + 1, num_objects=2, style="user")
        for name in args.measure.split(","):
            agent = load_agent(name)
            for greedy in (False, True):
                cells = " / ".join(f"{v:.2f}" for v in shares(agent, test, greedy=greedy).values())
                print(f"{name} ({'greedy' if greedy else 'sampled'}): keep / second / both {cells}")
        return
    rows, steps = [], []
    for setting in args.settings.split(";"):
        lr, kl, q, g = (float(x) for x in setting.split(","))
        result = run(args.agent, lr, kl, int(q), int(g), args.updates, args.every, args.seed)
        steps = [u for u, _ in result["curve"]]
        cells = [f"{lr:g}", f"{kl:g}", f"{int(q)} x {int(g)}"]
        cells += [f"{s['keep']:.2f} / {s['second']:.2f} / {s['both']:.2f}" for _, s in result["curve"]]
        greedy = result["greedy"]
        cells += [f"{greedy['keep']:.2f} / {greedy['second']:.2f} / {greedy['both']:.2f}"]
        rows.append(cells + [f"{result['max_kl']:.2f}", f"{result['minutes']:.1f}"])
        print(rows[-1], flush=True)
    lines = report.header("GRPO on a clean signal: the toy policy's rewrite, rewarded by its text")
    lines += [
        f"Policy: `{os.path.relpath(args.agent)}`. Reward = meaning kept + second object named first (0..2), on "
        f"two-object user-style train queries; {args.updates} updates of Q queries x G rewrites "
        "(`agents.grpo.grpo_update`, LoRA r = 8); cells: shares of 'meaning kept / second object first / both' "
        "on 200 held-out test-split two-object queries, sampled at temperature 1 (the last share column "
        "greedy). Max KL: the largest per-update mean of the k3 estimate.",
        "",
    ]
    header = ["lr", "KL coef", "Q x G", *(f"update {u}" for u in steps), "greedy after", "max KL", "minutes"]
    lines += report.table(header, rows)
    if args.env_signal:
        lines += [
            "",
            "## The same decisions' signal in the env",
            "",
            f"The untrained policy in `PromptLoop-v0` as `promptloop train` runs it (random refinement points, one "
            f"initial noise per group), {args.env_signal} updates of 4 two-object train queries x G = 8: the mean "
            "GRPO advantage (reward minus group mean, over group std) of the episodes that make each decision, "
            "and of those that do not (95 % CIs), their difference, and that difference had the same groups been "
            "rewarded by the clean reward above (meaning kept + second object first, of the first rewrite).",
            "",
        ]
        table = env_signal(args.agent, args.env_signal, 8, args.seed)
        header = ["decision", "episodes", "mean advantage with", "without", "difference", "clean reward: difference"]
        lines += report.table(header, table, align="lrrrrr")
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
