"""Ray RLlib PPO on the toy world through the same numeric adapters as the Stable-Baselines3 example.

    pip install "ray[rllib]"        # see below: best in its own virtual environment
    python examples/rllib_prompt_bank.py [--iterations 3] [--eval-n 50]

The env is registered with ``ray.tune.registry.register_env`` under ``PromptLoopBank-v0``: ``PromptLoop-v0``
behind :func:`promptloop_env.sb3.make_sb3_env` (``Discrete`` prompt-bank actions, the preview, progress
and the query as numbers), then Gymnasium's ``TransformObservation`` (the preview's pixels to ``[0, 1]``) and
``FlattenObservation`` (one ``Box`` for RLlib's default MLP encoder). RLlib's new API
stack's PPO trains it for ``--iterations`` iterations in this process (no remote env runners), then the greedy
policy and the identity baseline (bank entry 0, "no change") are compared on held-out toy queries with the same
env seeds, as in ``examples/sb3_prompt_bank.py``, with the same bank and reward (JPEG compressibility, plus
``--align-weight`` times the toy alignment; see that example for why). Both rows report the reward and the
toy alignment of the same images.

RLlib pins its own Gymnasium (ray 2.60 installs gymnasium 1.2.x), so installing it may change the versions in
an existing environment (check with ``pip install --dry-run "ray[rllib]"``). A separate one works::

    python3 -m venv /tmp/rayvenv && /tmp/rayvenv/bin/pip install torch "ray[rllib]" -e .
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from agents.evaluate import ci95
from promptloop_env.wrappers import DEFAULT_BANK

ENV_NAME = "PromptLoopBank-v0"
#: The bank of examples/sb3_prompt_bank.py: the default bank, then two prompts that replace the query.
BANK = (*DEFAULT_BANK, "a small white circle on a white background", "")


def env_creator(config: dict):
    """The RLlib env: bank actions, the preview scaled to [0, 1], all fields flattened into one Box."""
    import gymnasium as gym
    from gymnasium import spaces

    import promptloop_env  # noqa: F401  (registers PromptLoop-v0 in this process, e.g. an env runner)
    from promptloop_env.sb3 import make_sb3_env

    env = make_sb3_env(**dict(config))
    space = spaces.Dict(
        {
            **env.observation_space.spaces,
            "preview": spaces.Box(0.0, 1.0, env.observation_space["preview"].shape, np.float32),
        }
    )

    def scale(obs: dict) -> dict:
        return {**obs, "preview": obs["preview"].astype(np.float32) / 255.0}

    return gym.wrappers.FlattenObservation(gym.wrappers.TransformObservation(env, scale, space))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3, help="PPO training iterations")
    parser.add_argument("--batch", type=int, default=256, help="environment steps per iteration")
    parser.add_argument("--eval-n", type=int, default=50, help="held-out toy-test queries")
    parser.add_argument("--steps", type=int, default=10, help="T, denoising steps")
    parser.add_argument("--refinements", type=int, default=2, help="K, refinement points (uniform)")
    parser.add_argument("--align-weight", type=float, default=0.0, help="toy_alignment's weight in the reward")
    args = parser.parse_args()
    try:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.tune.registry import register_env
    except ImportError:
        raise SystemExit(
            'This example needs Ray RLlib: pip install "ray[rllib]" (it pins its own gymnasium version, so '
            "prefer a separate virtual environment; see this file's docstring)."
        ) from None
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env_config = dict(
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        schedule="uniform",
        reward={"jpeg_compressibility": 1.0, "toy_alignment": args.align_weight},
        prompts="toy-train",
        bank=BANK,
        keys=("preview", "progress", "query"),
        preview_size=16,
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_env(ENV_NAME, env_creator)
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(
            train_batch_size_per_learner=args.batch,
            minibatch_size=min(64, args.batch),
            num_epochs=4,
            lr=1e-3,
            gamma=1.0,
            lambda_=1.0,
            entropy_coeff=0.01,
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()
    start = time.perf_counter()
    for i in range(args.iterations):
        result = algo.train()
        runners = result.get("env_runners", {})
        print(
            f"iteration {i + 1}: episode_return_mean {runners.get('episode_return_mean', float('nan')):.4f}, "
            f"env steps {result.get('num_env_steps_sampled_lifetime', runners.get('num_env_steps_sampled_lifetime'))}",
            flush=True,
        )
    print(f"trained in {(time.perf_counter() - start) / 60:.1f} min", flush=True)

    module = algo.get_module()
    env = env_creator(env_config)

    def greedy(obs: np.ndarray) -> int:
        with torch.no_grad():
            out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)[None]})
        return int(out["action_dist_inputs"][0].argmax())

    from promptloop_env.prompts import make_prompt_source

    draw, rng = make_prompt_source("toy-test"), np.random.default_rng(0)
    queries = [draw(rng) for _ in range(args.eval_n)]
    from promptloop_env.rewards import toy_alignment

    rewards: dict[str, list[float]] = {"identity": [], "RLlib PPO, greedy": []}
    alignment: dict[str, list[float]] = {"identity": [], "RLlib PPO, greedy": []}
    for name, policy in (("identity", lambda obs: 0), ("RLlib PPO, greedy", greedy)):
        for i, query in enumerate(queries):
            obs, _ = env.reset(seed=i, options={"query": query})
            done = False
            while not done:
                obs, reward, terminated, truncated, info = env.step(policy(obs))
                done = terminated or truncated
            rewards[name].append(float(reward))
            alignment[name].append(float(toy_alignment(info["image"][None], [query])[0]))

    def mean_ci(values: list[float]) -> str:
        array = np.asarray(values)
        return f"{array.mean():.4f} ± {ci95(array):.4f}"

    for name in rewards:
        print(f"{name}: reward {mean_ci(rewards[name])}, toy_alignment {mean_ci(alignment[name])} (n = {len(queries)})")
    diff = np.asarray(rewards["RLlib PPO, greedy"]) - np.asarray(rewards["identity"])
    print(f"paired difference of the reward: {mean_ci(list(diff))}")
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
