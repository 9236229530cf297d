"""Fuzz the env with what a careless or hostile user sends: odd text, wrong types, odd options.

    python benchmarks/fuzz.py [--actions 10000] [--out benchmarks/results/fuzz.md]

Valid actions are any ``str``: emoji, CJK, right-to-left marks, control characters, very long, empty, only
punctuation. Every observation must lie in the observation space (single and vector env), every reward must
be finite, no step may take more than ``--hang-seconds``. Invalid calls (non-str actions, sets and dicts to
the vector env, bad options and seeds) must raise ``TypeError``/``ValueError`` whose message names the
argument; anything else counts as a crash, and an error that does not name its argument as an unclear message.
"""

from __future__ import annotations

import argparse
import signal
import time

import gymnasium as gym
import numpy as np
import report  # benchmarks/report.py, next to this script

import promptloop_env  # noqa: F401

PIECES = [
    "a red circle", "🙂", "赤い円", "\u202eright-to-left", "\x00", "\x1b[31m", "\t", "\n", "\r\n", "\u200b",
    "ünïcödé", "", " ", ",,,", "!!!", "a " * 200, "x" * 3000, "<|im_end|>", "{query}", "%s %d", "\\", "'\"",
    "a large blue square above a small red triangle on a black background", "\ufeff", "\U0001f600" * 50,
]  # fmt: skip
INVALID_ACTIONS = [None, 3, 2.5, b"bytes", ["nested"], {"a": 1}, {"set"}, np.array(["x"])]
INVALID_VECTOR = [None, 3, {"a", "b"}, {"x": "a", "y": "b"}, "one string", ["too", "many", "items"]]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def random_text(rng: np.random.Generator) -> str:
    return "".join(str(rng.choice(PIECES)) for _ in range(int(rng.integers(0, 4))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--hang-seconds", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results/fuzz.md")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    rng = np.random.default_rng(0)
    counts = dict(actions=0, invalid_calls=0, crashes=0, hangs=0, space_violations=0, unclear_messages=0)
    examples: list[str] = []
    kwargs = dict(num_inference_steps=4, num_refinements=3, reward=lambda images, queries: np.zeros(len(images)))
    single = gym.make("PromptLoop-v0", **kwargs)
    vector = gym.make_vec("PromptLoop-v0", num_envs=args.num_envs, **kwargs)
    start = time.perf_counter()

    def guarded(call, *, expect_error: str | None = None):
        """Run ``call``; count hangs, crashes and unclear messages. Returns the result or None."""
        signal.alarm(args.hang_seconds)
        try:
            result = call()
            if expect_error is not None:
                counts["crashes"] += 1
                examples.append(f"accepted invalid {expect_error}")
            return result
        except Hang:
            counts["hangs"] += 1
            examples.append(f"hang: {call}")
        except (TypeError, ValueError) as error:
            if expect_error is None:
                counts["crashes"] += 1
                examples.append(f"{type(error).__name__}: {error}")
            elif expect_error not in str(error):
                counts["unclear_messages"] += 1
                examples.append(f"unclear ({expect_error}): {error}")
        except Exception as error:  # noqa: BLE001  (what the fuzzer is looking for)
            counts["crashes"] += 1
            examples.append(f"{type(error).__name__}: {error}")
        finally:
            signal.alarm(0)
        return None

    def check(env, obs, reward) -> None:
        if not env.observation_space.contains(obs):
            counts["space_violations"] += 1
            examples.append(f"observation outside the space: {obs['query']!r:.60} / {obs['prompt']!r:.60}")
        if not np.all(np.isfinite(reward)):
            counts["crashes"] += 1
            examples.append(f"non-finite reward {reward}")

    episode = 0
    while counts["actions"] < args.actions:
        use_vector = episode % 2 == 1
        env = vector if use_vector else single
        n = args.num_envs if use_vector else 1
        query = [random_text(rng) for _ in range(n)] if use_vector else random_text(rng)
        out = guarded(lambda env=env, query=query, seed=episode: env.reset(seed=seed, options={"query": query}))
        episode += 1
        if out is None:
            continue
        check(env, out[0], 0.0)
        done = False
        while not done and counts["actions"] < args.actions:
            if rng.random() < 0.05:  # an invalid call first: must be refused clearly, leaving the env usable
                counts["invalid_calls"] += 1
                if use_vector:
                    bad = INVALID_VECTOR[int(rng.integers(len(INVALID_VECTOR)))]
                    guarded(lambda bad=bad, env=env: env.step(bad), expect_error="actions must be")
                else:
                    bad = INVALID_ACTIONS[int(rng.integers(len(INVALID_ACTIONS)))]
                    guarded(lambda bad=bad, env=env: env.step(bad), expect_error="expects the new prompt as a str")
            action = [random_text(rng) for _ in range(n)] if use_vector else random_text(rng)
            result = guarded(lambda env=env, action=action: env.step(action))
            counts["actions"] += n
            if result is None:
                break
            obs, reward, terminated, truncated, _ = result
            check(env, obs, reward)
            done = bool(np.all(np.asarray(terminated) | np.asarray(truncated)))
    for options, expected in [
        (["a red circle"], "must be a dict"),
        ({"qeury": "x"}, "Unknown reset option"),
        ({"latents": np.zeros((4, 8, 8), np.complex64)}, "options['latents']"),
        ({"latents": 1.0}, "options['latents']"),
    ]:
        counts["invalid_calls"] += 1
        guarded(lambda options=options: single.reset(options=options), expect_error=expected)
    for seed in (-1, 2.5, "3"):
        counts["invalid_calls"] += 1
        guarded(lambda seed=seed: single.reset(seed=seed), expect_error="seed must be")
    seconds = time.perf_counter() - start
    lines = report.header("Fuzzing the env: odd text, wrong types, odd options")
    lines += [
        f"{counts['actions']} actions over {episode} episodes (single env and a {args.num_envs}-env vector env "
        f"alternating; T = 4, K = 3, a zero reward so that any query is accepted), random strings built from "
        f"{len(PIECES)} pieces (emoji, CJK, control characters, right-to-left marks, 3,000-character runs, ...), "
        f"plus {counts['invalid_calls']} invalid calls; a step over {args.hang_seconds} s counts as a hang. "
        f"{seconds:.0f} s.",
        "",
        *report.table(
            ["actions", "invalid calls", "crashes", "hangs", "space violations", "unclear messages"],
            [
                [
                    counts[k]
                    for k in ("actions", "invalid_calls", "crashes", "hangs", "space_violations", "unclear_messages")
                ]
            ],
        ),  # fmt: skip
        "",
        "Examples (at most 10):" if examples else "No failures.",
        *[f"- {e[:200]}" for e in examples[:10]],
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
