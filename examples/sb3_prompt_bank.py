"""Stable-Baselines3 PPO on the toy world, choosing a prompt from a bank at each refinement point.

    OMP_NUM_THREADS=1 python examples/sb3_prompt_bank.py [--timesteps 3072] [--eval-n 200] [--out FILE.md]

``PromptLoop-v0`` acts in text; :class:`promptloop_env.sb3.PromptLoopSB3VecEnv` (the batched vector env with
the adapters of :mod:`promptloop_env.wrappers`) makes it an ordinary SB3 task: ``Discrete`` actions over
:data:`BANK` (entry 0 leaves the query unchanged; then :data:`~promptloop_env.wrappers.DEFAULT_BANK`'s
background, size and position modifiers appended to the query; then two prompts that replace it) and a
``Dict`` observation (the preview as a channel-first image, progress, the query and the prompt in force as
bags of words) for ``MultiInputPolicy``.

The reward. On its alignment score (``toy_alignment``) the shipped toy model barely responds to wording (every
fixed rewrite lands within 0.012 of the query itself: ``benchmarks/results/toy_rewrites.md``), and appended
modifiers barely change its images at all: their JPEG sizes stay within 0.006 kB of the query's
(``benchmarks/results/sb3_bank_effects.md``). Replacing the prompt does change the image measurably (a plain
"small white circle on white" saves about 0.08 kB, 7 %, of the JPEG). The default reward is therefore
``jpeg_compressibility`` (minus the JPEG size in kB, DDPO's compressibility), on which the bank has an entry
better than identity; the toy alignment of the same images is reported beside it, and shows what the policy
gives up for it (the reward knows nothing of the query). ``--align-weight w`` adds ``w * toy_alignment``.

Training uses the grammar's ``toy-train`` queries; evaluation uses held-out ``toy-test`` queries with the same
env seeds for the trained policy (greedy) and the identity baseline (bank entry 0, "no change"), and reports
the mean reward with a 95 % confidence interval, the paired difference, and the ``toy_alignment`` and JPEG size
of the same images.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

from agents.evaluate import ci95
from promptloop_env.prompts import make_prompt_source
from promptloop_env.rewards import jpeg_compressibility, toy_alignment
from promptloop_env.wrappers import DEFAULT_BANK

#: The default bank (the query, then modifiers appended to it) and two prompts that replace the query: on the
#: toy model only replacing the prompt changes the JPEG size measurably (benchmarks/results/sb3_bank_effects.md).
BANK: tuple[str, ...] = (*DEFAULT_BANK, "a small white circle on a white background", "")


def mean_ci(values: np.ndarray) -> str:
    return f"{values.mean():.4f} ± {ci95(values):.4f}"


def evaluate(venv, queries: list[str], policy) -> dict[str, np.ndarray]:
    """One episode per query, ``venv.num_envs`` at a time, env seed i for query i; ``policy(obs) -> actions``."""
    n = venv.num_envs
    out: dict[str, list] = {"reward": [], "jpeg_compressibility": [], "toy_alignment": [], "actions": []}
    for start in range(0, len(queries), n):
        chunk = list(queries[start : start + n])
        real = len(chunk)
        chunk += [chunk[-1]] * (n - real)  # pad the last batch; the padding episodes are dropped
        venv.seed(start)
        venv.set_options({"query": chunk})
        obs = venv.reset()
        done = np.zeros(n, dtype=bool)
        while not done.all():
            actions = policy(obs)
            out["actions"] += list(np.asarray(actions)[:real])
            obs, rewards, done, infos = venv.step(actions)
        images = np.stack([info["image"] for info in infos[:real]])
        out["reward"] += list(rewards[:real])
        out["jpeg_compressibility"] += list(jpeg_compressibility(images, chunk[:real]))
        out["toy_alignment"] += list(toy_alignment(images, chunk[:real]))
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=3072, help="PPO environment steps (K per episode)")
    parser.add_argument("--eval-n", type=int, default=200, help="held-out toy-test queries")
    parser.add_argument("--steps", type=int, default=10, help="T, denoising steps")
    parser.add_argument("--refinements", type=int, default=2, help="K, refinement points (uniform)")
    parser.add_argument("--align-weight", type=float, default=0.0, help="toy_alignment's weight in the reward")
    parser.add_argument("--n-envs", type=int, default=8, help="trajectories per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as Markdown here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from promptloop_env.sb3 import PromptLoopSB3VecEnv

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    reward = {"jpeg_compressibility": 1.0}
    if args.align_weight:
        reward["toy_alignment"] = args.align_weight
    env_kwargs = dict(
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        schedule="uniform",
        reward=reward,
        prompts="toy-train",
    )
    start = time.perf_counter()
    # One batched vector env (one denoiser call per step for all n envs); make_vec_env(make_sb3_env, ...) works
    # too, with n separate denoiser calls per step.
    venv = VecMonitor(PromptLoopSB3VecEnv(args.n_envs, bank=BANK, **env_kwargs))
    venv.seed(args.seed)
    # Terminal reward only and K-step episodes: no discounting; small batches, several epochs.
    model = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=4,
        gamma=1.0,
        gae_lambda=1.0,
        learning_rate=1e-3,
        ent_coef=0.01,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    print(f"training PPO for {args.timesteps} steps on {args.n_envs} envs ...", flush=True)
    model.learn(total_timesteps=args.timesteps)
    train_minutes = (time.perf_counter() - start) / 60
    returns = [e["r"] for e in model.ep_info_buffer]
    print(f"trained in {train_minutes:.1f} min; last {len(returns)} training returns: {np.mean(returns):.4f}")

    # Held out (no scene of the training split); the queries of benchmarks/sb3_bank_effects.py for the same n.
    draw, rng = make_prompt_source("toy-test"), np.random.default_rng(0)
    queries = [draw(rng) for _ in range(args.eval_n)]
    eval_env = PromptLoopSB3VecEnv(args.n_envs, bank=BANK, **env_kwargs)
    start = time.perf_counter()
    trained = evaluate(eval_env, queries, lambda obs: model.predict(obs, deterministic=True)[0])
    identity = evaluate(eval_env, queries, lambda obs: np.zeros(args.n_envs, dtype=np.int64))
    eval_minutes = (time.perf_counter() - start) / 60
    diff = trained["reward"] - identity["reward"]
    counts = np.bincount(trained["actions"], minlength=len(BANK))
    reward_name = " + ".join(f"{w:g} * {n}" for n, w in reward.items())
    lines = [
        f"# SB3 PPO over a prompt bank on the toy world ({datetime.date.today().isoformat()})",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python examples/sb3_prompt_bank.py "
        f"--timesteps {args.timesteps} "
        f"--eval-n {args.eval_n} --steps {args.steps} --refinements {args.refinements} "
        f"--align-weight {args.align_weight:g} --n-envs {args.n_envs} --seed {args.seed}`  ",
        f"Machine: {platform.machine()} CPU, 2 cores shared with other jobs (wall times are noisy). Training "
        f"{train_minutes:.1f} min, evaluation {eval_minutes:.1f} min.  ",
        f"Env: `PromptLoop-v0` (the shipped toy model), T = {args.steps}, K = {args.refinements} uniform "
        f"refinement points, reward `{reward_name}`; `PromptLoopSB3VecEnv` (bank actions, Dict observations, "
        "previews resized to 36 x 36), PPO `MultiInputPolicy` (n_steps 32 per env, batch 64, 4 epochs, lr 1e-3, "
        "gamma 1, ent_coef 0.01), training queries from `toy-train`.  ",
        f"Eval: {args.eval_n} held-out `toy-test` queries, env seed i for query i, the same for both rows; "
        "the trained policy acts greedily. Mean ± 95 % CI (1.96 std / sqrt(n)).",
        "",
        "| policy | reward | toy_alignment | jpeg_compressibility (-kB) |",
        "|---|---|---|---|",
        f"| identity (bank entry 0, no change) | {mean_ci(identity['reward'])} "
        f"| {mean_ci(identity['toy_alignment'])} | {mean_ci(identity['jpeg_compressibility'])} |",
        f"| PPO, greedy | {mean_ci(trained['reward'])} | {mean_ci(trained['toy_alignment'])} "
        f"| {mean_ci(trained['jpeg_compressibility'])} |",
        "",
        f"Paired difference PPO - identity (same query, same noise): reward {mean_ci(diff)}, "
        f"toy_alignment {mean_ci(trained['toy_alignment'] - identity['toy_alignment'])}, "
        f"jpeg_compressibility {mean_ci(trained['jpeg_compressibility'] - identity['jpeg_compressibility'])}.",
        "",
        "Actions of the trained policy on the eval episodes: "
        + ", ".join(f"`{BANK[i]!r}` {c}" for i, c in enumerate(counts) if c)
        + ".",
        "",
        f"Training returns (SB3 Monitor, the last {len(returns)} episodes): {np.mean(returns):.4f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
