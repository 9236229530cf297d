"""The shipped toy model and the default PromptLoop-v0 built on it (offline, deterministic, sane)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import promptloop_env  # noqa: F401
from promptloop_env.rewards import make_reward
from promptloop_env.toy import ParseError, caption, parse, random_scene, render, score
from promptloop_env.toy.model import TOY_MODEL_DIR, load_toy_pipeline

# A regression guard for retrained weights: one-object queries in the model's own dialect (`describe`) whose
# colour and position the model must get (toy world v2 follows position words; v1 did not).
COLOUR_QUERIES = [
    "a large red circle in the center on a white background",
    "a small blue square on the left on a gray background",
    "a large green triangle at the top on a black background",
    "a large yellow circle at the bottom on a black background",
    "a large purple square on the right on a white background",
    "a large orange triangle in the center on a gray background",
    "a large pink circle on the left on a brown background",
    "a large cyan square at the top on a brown background",
]


def test_shipped_weights_are_safetensors_and_small():
    files = [f for f in TOY_MODEL_DIR.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert not weights, f"pickled weights shipped: {weights}"
    assert len([f for f in files if f.suffix == ".safetensors"]) == 3
    assert sum(f.stat().st_size for f in files) <= 30e6


def test_default_env_is_the_toy_world():
    env = gym.make("PromptLoop-v0")
    assert env.unwrapped.pipeline is load_toy_pipeline()
    obs, info = env.reset(seed=0)
    parse(obs["query"])  # default queries come from the grammar
    for _ in range(5):
        obs, reward, terminated, _, info = env.step(obs["query"])
    assert terminated and 0.0 <= reward <= 1.0
    assert set(info["reward_components"]) == {"toy_alignment"}


def test_shipped_model_is_deterministic_for_a_seed():
    pipe = load_toy_pipeline(cache=False)  # a fresh from_pretrained load, offline
    images = []
    for p in (pipe, pipe, load_toy_pipeline()):
        env = gym.make("PromptLoop-v0", pipeline=p, reward="toy_alignment", prompts="toy-test")
        obs, _ = env.reset(seed=11)
        for _ in range(5):
            obs, _, _, _, info = env.step(obs["query"])
        images.append(info["image"])
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])


def test_model_draws_the_queried_colour():
    envs = gym.make_vec("PromptLoop-v0", num_envs=len(COLOUR_QUERIES), num_refinements=1)
    hits = placed = 0
    for seed in (0, 100):
        obs, _ = envs.reset(seed=seed, options={"query": COLOUR_QUERIES})
        _, _, terminated, _, info = envs.step(list(obs["query"]))
        assert terminated.all()
        verdicts = [score(img, q).checks for img, q in zip(info["image"], COLOUR_QUERIES, strict=True)]
        hits += sum(v["color"] for v in verdicts)
        placed += sum(v["position"] for v in verdicts)
    assert hits >= 0.75 * 2 * len(COLOUR_QUERIES), f"only {hits} of {2 * len(COLOUR_QUERIES)} colours right"
    assert placed >= 0.5 * 2 * len(COLOUR_QUERIES), f"only {placed} of {2 * len(COLOUR_QUERIES)} positions right"


def test_model_does_not_know_the_colour_words_only_users_write():
    # Toy world v5: the captions named colours by their caption words only, so a user's synonym ("navy") leaves
    # the colour to chance while the caption word ("blue") is followed (the dialect headroom of the world).
    from promptloop_env.toy.grammar import _COLOR_WORDS

    synonym_queries = [
        " ".join(_COLOR_WORDS[w][1] if w in _COLOR_WORDS else w for w in q.split()) for q in COLOUR_QUERIES
    ]
    envs = gym.make_vec("PromptLoop-v0", num_envs=len(COLOUR_QUERIES), num_refinements=1)
    hits = {}
    for name, queries in (("caption words", COLOUR_QUERIES), ("synonyms", synonym_queries)):
        hits[name] = 0
        for seed in (0, 100):
            obs, _ = envs.reset(seed=seed, options={"query": queries})
            _, _, _, _, info = envs.step(list(obs["query"]))
            hits[name] += sum(score(img, q).checks["color"] for img, q in zip(info["image"], queries, strict=True))
    assert hits["caption words"] >= 12 and hits["synonyms"] <= 6, hits


def test_toy_rewards_on_renders_of_the_query():
    rng = np.random.default_rng(3)
    alignment, all_correct = make_reward("toy_alignment"), make_reward("toy_all_correct")
    scenes = [random_scene(rng) for _ in range(20)]
    images = np.stack([render(s) for s in scenes])
    queries = [caption(s, rng, drop=0.3) for s in scenes]
    assert np.allclose(alignment(images, queries), 1.0)
    assert np.allclose(all_correct(images, queries), 1.0)
    blank = np.zeros_like(images[:1])
    assert alignment(blank, queries[:1])[0] < 1.0 and all_correct(blank, queries[:1])[0] == 0.0


def test_toy_reward_rejects_queries_outside_the_grammar():
    with pytest.raises(ParseError, match="unknown words \\['zebra'"):
        make_reward("toy_alignment")(np.zeros((1, 32, 32, 3), np.uint8), ["a zebra"])
