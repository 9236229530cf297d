"""The experiment harness: diagnostics against hand-computed values, the training hook's TensorBoard scalars,
and each ``promptloop bench`` experiment on a tiny budget writing its table, CSV and plot."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from agents.bench import paired_delta, schedules_for, tb_scalars, train_agent
from agents.cli import main
from agents.diagnostics import (
    agent_text_embedder,
    cosine_similarity,
    embedding_similarity,
    episode_diagnostics,
    heldout_scores,
    jaccard,
    make_heldout_rewards,
    prompt_drift,
)
from agents.evaluate import EvalResult
from agents.rollout import Episode
from agents.toy.scripted import scripted_references
from agents.train import ConfigError, TrainConfig, load_agent, train
from promptloop_env.rewards import make_reward

TINY = ["--eval-n", "2", "--num-envs", "2", "--num-inference-steps", "4", "--num-refinements", "2"]
TINY_TRAINING = ["--updates", "1", "--queries-per-update", "1", "--group-size", "2"]


def test_jaccard_and_prompt_drift_by_hand():
    assert jaccard("a red circle", "A big red circle") == pytest.approx(3 / 4)
    assert jaccard("a red circle", "a red circle.") == 1.0
    assert jaccard("", "") == 1.0
    assert jaccard("red", "blue") == 0.0
    drift = prompt_drift(["a red circle"], [["a red circle", "a blue square"]])
    # Jaccard 1 and |{a}| / |{a, red, circle, blue, square}| = 1/5: mean 0.6.
    assert drift["prompt_jaccard"] == pytest.approx(0.6)
    assert drift["prompt_drift"] == pytest.approx(0.4)
    assert drift["final_prompt_jaccard"] == pytest.approx(0.2)
    assert drift["prompt_exact"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one prompt list per query"):
        prompt_drift(["a", "b"], [["a"]])


def test_cosine_similarity_and_embeddings():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    sims = cosine_similarity(a, np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(sims, [1 / np.sqrt(2), 0.0, 1.0])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        cosine_similarity(np.zeros(3), np.zeros(3))
    embed = agent_text_embedder(load_agent("toy"))
    vectors = embed(["a red circle", "a blue square"])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()
    assert embedding_similarity(["a red circle"], [["a red circle"]], embed) == pytest.approx(1.0)
    assert embedding_similarity(["a red circle"], [["a blue square"]], embed) < 1.0


def test_heldout_scores_and_episode_diagnostics():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    queries = ["a red circle", "a blue square"]
    rewards = make_heldout_rewards("jpeg_compressibility, toy_alignment")
    scores = heldout_scores(rewards, images, queries)
    direct = make_reward("jpeg_compressibility")(np.stack(images), queries)
    assert scores["jpeg_compressibility"] == pytest.approx(direct.mean())
    episodes = [
        Episode(query=q, seed=0, prompts=[q, q + " on the left"], image=i) for q, i in zip(queries, images, strict=True)
    ]
    out = episode_diagnostics(episodes, rewards)
    assert out["diagnostics/heldout/jpeg_compressibility"] == pytest.approx(direct.mean())
    # Each episode: Jaccard 1 and 3/6 ("a red circle" vs "a red circle on the left"), 3/6 for the square too.
    assert out["diagnostics/prompt_jaccard"] == pytest.approx(0.75)
    assert out["diagnostics/prompt_drift"] == pytest.approx(0.25)
    assert "diagnostics/prompt_embedding_similarity" not in out


def test_paired_delta_and_schedules():
    a = EvalResult(np.array([0.5, 0.7, 0.9]))
    b = EvalResult(np.array([0.4, 0.7, 0.7]))
    mean, half = paired_delta(a, b)
    assert mean == pytest.approx(0.1)
    assert half == pytest.approx(1.96 * np.std([0.1, 0.0, 0.2], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="same episodes"):
        paired_delta(a, EvalResult(np.array([0.1])))
    s = schedules_for(3, 20)
    assert (s["early"], s["middle"], s["late"]) == ([1, 2, 3], [8, 9, 10], [17, 18, 19])
    with pytest.raises(ConfigError, match="K = 20"):
        schedules_for(20, 20)


def test_train_hook_logs_diagnostics(tmp_path, tiny_run):
    # Trained on jpeg_compressibility with the same reward held out: the held-out scalar must equal the return.
    config = tiny_run(
        "run",
        reward="jpeg_compressibility",
        heldout_rewards="jpeg_compressibility,toy_alignment",
        num_inference_steps=4,
        num_refinements=1,
        queries_per_update=1,
        checkpoint_every=10,
        log_images_every=0,
    )
    train(config, progress=False)
    folder = tmp_path / "run" / "tensorboard"
    _, returns = tb_scalars(folder, "charts/episodic_return")
    steps, heldout = tb_scalars(folder, "diagnostics/heldout/jpeg_compressibility")
    np.testing.assert_allclose(heldout, returns, rtol=1e-6)
    assert list(steps) == [2, 4]
    for tag in ("diagnostics/heldout/toy_alignment", "diagnostics/prompt_drift", "diagnostics/prompt_jaccard"):
        _, values = tb_scalars(folder, tag)
        assert len(values) == 2 and ((0 <= values) & (values <= 1)).all(), tag
    _, drift = tb_scalars(folder, "diagnostics/prompt_drift")
    _, overlap = tb_scalars(folder, "diagnostics/prompt_jaccard")
    np.testing.assert_allclose(drift + overlap, 1.0, rtol=1e-6)
    _, similarity = tb_scalars(folder, "diagnostics/prompt_embedding_similarity")
    assert len(similarity) == 2 and (similarity <= 1 + 1e-6).all()
    with pytest.raises(ConfigError, match="heldout_rewards"):
        TrainConfig(heldout_rewards="toy_alignment,beauty").validate()


def test_train_agent_reuses_a_finished_run_with_the_same_settings(tmp_path, tiny_run):
    # kl_coef / epochs / minibatches left to the algorithm: config.json holds them resolved, and reuse must match.
    settings = {k: v for k, v in dataclasses.asdict(tiny_run("x", updates=1)).items() if k != "out"}
    first = train_agent("run", tmp_path, reuse=True, **settings)
    stamp = (first.agent / "adapter_model.safetensors").stat().st_mtime_ns
    again = train_agent("run", tmp_path, reuse=True, **settings)
    assert again.agent == first.agent and again.minutes == pytest.approx(first.minutes)
    assert (again.agent / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # not trained again
    other = train_agent("run", tmp_path, reuse=True, **{**settings, "lr": 2e-3})  # other settings: trained again
    assert json.loads((other.agent.parent / "config.json").read_text())["lr"] == 2e-3


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_outputs(folder, name, expected_rows):
    for suffix in (".md", ".csv", ".png"):
        assert (folder / f"{name}{suffix}").stat().st_size > 0, suffix
    assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _csv(folder / f"{name}.csv")
    assert len(rows) == expected_rows
    text = (folder / f"{name}.md").read_text()
    assert "Command: `promptloop bench" in text and "![" in text
    return rows, text


def test_bench_ablation_and_unseen_backbone(tmp_path):
    out = tmp_path / "ablation"
    args = ["bench", "ablation", *TINY, *TINY_TRAINING, "--train-seeds", "0,1", "--out", str(out)]
    assert main([*args, "--lr", "2e-3", "--kl-coef", "0.01", "--minibatches", "2", "--train-schedule", "uniform"]) == 0
    # identity, 2 scripted references, then the untrained policy, one-shot, 2 x no preview, 2 x preview and PPO,
    # each sampled and greedy
    rows, text = _check_outputs(out, "ablation", 1 + 2 + 2 * 7)
    labels = [r["label"] for r in rows]
    assert labels[0] == "base model (identity)" and rows[0]["mode"] == "-"
    assert labels[1:3] == list(scripted_references()) and [r["mode"] for r in rows[1:3]] == ["-", "-"]
    assert labels[3:5] == ["untrained policy (K = 2)"] * 2 and [r["mode"] for r in rows[3:5]] == ["sampled", "greedy"]
    rl = (
        "RL one-shot rewrite (K = 1 at step 0)",
        "RL K = 2, no latent feedback, seed 0",
        "RL K = 2, no latent feedback, seed 1",
        "RL K = 2 + latent feedback, seed 0",
        "RL K = 2 + latent feedback, seed 1",
        "PPO K = 2 + latent feedback",
    )
    assert all(labels.count(label) == 2 for label in rl)
    assert float(rows[0]["delta_vs_identity"]) == 0.0
    for r in rows:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
    assert "| base model (identity) | - |" in text
    assert "RL K = 2 + latent feedback, seed 1 (sampled) - no latent feedback:" in text
    assert "share of the scripted closed-loop gain" in text and "episodes/s" in text
    agent = out / "runs" / "rl-k-preview-s0" / "agent"
    assert agent.is_dir()
    for run in ("rl-k-preview-s0", "ppo-k-preview"):  # the training flags reach every run
        config = json.loads((out / "runs" / run / "config.json").read_text())
        assert (config["lr"], config["kl_coef"], config["minibatches"], config["schedule"]) == (
            2e-3,
            0.01,
            2,
            "uniform",
        )
    assert json.loads((out / "runs" / "rl-one-shot" / "config.json").read_text())["schedule"] == "0"
    assert "2 minibatches, learning rate 0.002, KL coefficient 0.01, uniform refinement points" in text

    out = tmp_path / "unseen"
    args = ["bench", "unseen-backbone", *TINY, "--modes", "greedy", "--agent", str(agent), "--out", str(out)]
    assert main(args) == 0
    rows, _ = _check_outputs(out, "unseen_backbone", 2 * 3)
    assert [r["backbone"] for r in rows] == ["PromptLoop-v0"] * 3 + ["PromptLoop-ToyB-v0"] * 3
    assert [r["seen"] for r in rows] == ["trained on"] * 3 + ["unseen"] * 3
    assert [r["label"] for r in rows[:3]] == ["identity", "untrained policy", "trained policy"]


def test_bench_k_sweep(tmp_path, capsys):
    out = tmp_path / "k"
    assert main(["bench", "k-sweep", *TINY, "--ks", "0,1,3", "--modes", "greedy", "--out", str(out)]) == 0
    rows, _ = _check_outputs(out, "k_sweep", 3 + 5)
    assert [r["setting"] for r in rows[:3]] == ["K = 0 (query only)", "K = 1, uniform", "K = 3, uniform"]
    assert [r["setting"] for r in rows[3:]] == ["early (1,2)", "middle (1,2)", "late (2,3)", "uniform", "random"]
    assert main(["bench", "k-sweep", *TINY, "--ks", "0,4", "--out", str(out)]) == 2
    assert "each K must be in 0..3" in capsys.readouterr().err


def test_bench_overopt(tmp_path, capsys):
    out = tmp_path / "overopt"
    args = ["bench", "overopt", *TINY, *TINY_TRAINING, "--modes", "greedy", "--out", str(out)]
    assert main([*args, "--pairs", "jpeg_compressibility:toy_alignment"]) == 0
    rows, text = _check_outputs(out, "overopt", 2)
    assert [r["policy"] for r in rows] == ["untrained (toy)", "trained on jpeg_compressibility"]
    for column in ("jpeg_compressibility", "toy_alignment", "prompt Jaccard", "CLIP-text similarity (toy model)"):
        assert all(r[column] != "" for r in rows), column
    training = _csv(out / "overopt_training.csv")
    assert [r["metric"] for r in training] == [
        "train: jpeg_compressibility",
        "held-out: toy_alignment",
        "prompt drift (1 - Jaccard)",
        "agent-embedding similarity",
    ]
    assert all(r["updates"] == "1" for r in training)
    assert "## During training" in text
    assert main([*args, "--pairs", "jpeg_compressibility"]) == 2  # no held-out reward: a clear error
    assert "train:heldout" in capsys.readouterr().err
