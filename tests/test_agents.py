"""The agent package: MLLMAgent log-probs, LoRA reference, the PPO/GRPO maths, updates, resume, learning."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401  (registers the env ids)
from agents.baselines import FixedSuffix, Identity, OneShot, RandomBank, make_baseline
from agents.grpo import GRPOSettings, group_advantages, grpo_loss, grpo_update
from agents.mllm import AgentError, MLLMAgent, parse_prompt
from agents.ppo import PPOSettings, gae, ppo_losses, ppo_update, token_rewards, whiten
from agents.rollout import annotate, collect
from agents.tiny import tiny_idefics3, tiny_llava, tiny_qwen2_vl
from agents.toy import load_toy_policy

WORDS = "a red blue circle square on the left right white background small large".split()


def observations(n: int, seed: int = 0) -> dict:
    """A vector-env style batch whose chats have different lengths (so the batch is padded)."""
    rng = np.random.default_rng(seed)
    queries = ["a red circle", "a small blue square on the left", "red", "a large circle on a white background"]
    return {
        "preview": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        "query": tuple(queries[i % 4] for i in range(n)),
        "prompt": tuple(queries[(i + 1) % 4] for i in range(n)),
        "progress": rng.random((n, 1)).astype(np.float32),
    }


FAMILIES = {
    "qwen2_vl": lambda: tiny_qwen2_vl(WORDS),
    "qwen2_5_vl": lambda: tiny_qwen2_vl(WORDS, qwen2_5=True),
    "llava": lambda: tiny_llava(WORDS),
    "idefics3": lambda: tiny_idefics3(WORDS),  # inputs built by its own processor
}


def make_agent(family: str, **kwargs) -> MLLMAgent:
    built = FAMILIES[family]()
    if len(built) == 2:
        return MLLMAgent(built[0], built[1], max_new_tokens=8, **kwargs)
    model, tokenizer, image_processor = built
    return MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, max_new_tokens=8, **kwargs)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generation_logprobs_equal_training_forward(family):
    agent = make_agent(family, temperature=1.3)
    torch.manual_seed(0)
    turns = agent.generate(observations(4))
    assert len({len(t.context_ids) for t in turns}) > 1  # padded batch
    batched = agent.score(turns).logprobs
    single = [agent.score([t]).logprobs[0] for t in turns]
    for turn, b, s in zip(turns, batched, single, strict=True):
        assert len(turn.response_ids) >= 1
        torch.testing.assert_close(b, turn.logprobs, atol=1e-4, rtol=0)
        torch.testing.assert_close(s, turn.logprobs, atol=1e-4, rtol=0)
        assert agent.suppressed_ids and not set(turn.response_ids.tolist()) & set(agent.suppressed_ids)


def test_reference_is_the_base_model_with_the_adapter_disabled():
    agent = make_agent("qwen2_vl")
    base = make_agent("qwen2_vl")  # same seed: the same base weights
    torch.manual_seed(1)
    turns = agent.generate(observations(3))
    agent.add_lora(r=4)
    with torch.no_grad():
        for name, param in agent.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    trained = agent.score(turns).logprobs
    reference = agent.reference(turns)
    expected = base.score(turns).logprobs
    for r, e, t in zip(reference, expected, trained, strict=True):
        torch.testing.assert_close(r, e, atol=1e-5, rtol=0)
        assert not torch.allclose(t, e, atol=1e-3)
    lora = [n for n, p in agent.model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n and "language_model" in n for n in lora)


def test_parse_prompt_and_fallback_to_the_prompt_in_force():
    assert parse_prompt("<prompt> a red circle </prompt> because") == "a red circle"
    assert parse_prompt("Sure.\n<prompt>a blue square") == "a blue square"
    assert parse_prompt('\n  "a cat"\nsecond line') == "a cat"
    assert parse_prompt("  \n ") is None and parse_prompt("<prompt></prompt>") is None
    agent = make_agent("qwen2_vl")
    # A model that only ever ends its turn at once: every answer is empty, so the prompt in force is kept.
    with torch.no_grad():
        head = agent.model.lm_head.weight
        head.zero_()
        head[min(agent.eos_token_ids)] = 50.0
        agent.model.model.language_model.norm.weight.fill_(1.0)
    obs = observations(2)
    turns = agent.generate(obs)
    assert [t.prompt for t in turns] == list(obs["prompt"]) and all(t.fallback for t in turns)


def test_agent_errors_name_the_model_and_what_is_missing():
    model, tokenizer, image_processor = tiny_qwen2_vl(WORDS)
    tokenizer.chat_template = None
    with pytest.raises(AgentError, match="chat template"):
        MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, name="my-model")
    with pytest.raises(AgentError, match="my-model.*image processor"):
        MLLMAgent(model, tokenizer=tokenizer, name="my-model")
    model, tokenizer, image_processor = tiny_qwen2_vl(WORDS)
    with pytest.raises(AgentError, match="temperature"):
        MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, temperature=0)
    with pytest.raises(AgentError, match="nowhere"):
        MLLMAgent.from_pretrained("/nowhere/no-such-model")
    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2))  # fmt: skip
    with pytest.raises(AgentError, match="model type 'llama' needs its processor.*qwen2_vl"):
        MLLMAgent(text_only, tokenizer=tokenizer, image_processor=image_processor)


def test_gae_matches_hand_computed_values():
    rewards = torch.tensor([0.0, 0.0, 1.0])
    values = torch.tensor([0.5, 0.2, 0.1])
    # deltas: -0.3, -0.1, 0.9; A2 = 0.9, A1 = -0.1 + 0.95 * 0.9, A0 = -0.3 + 0.95 * A1
    expected = torch.tensor([-0.3 + 0.95 * 0.755, 0.755, 0.9])
    torch.testing.assert_close(gae(rewards, values, 1.0, 0.95), expected)
    # gamma 0.5, lambda 1: A2 = 0.9; A1 = 0 + 0.5 * 0.1 - 0.2 + 0.5 * 0.9 = 0.3; A0 = 0.1 - 0.5 + 0.15 = -0.25
    torch.testing.assert_close(gae(rewards, values, 0.5, 1.0), torch.tensor([-0.25, 0.3, 0.9]))
    shaped = token_rewards(torch.tensor([0.0, -1.0, -2.0]), torch.tensor([0.0, -1.5, -1.0]), 2.0, 0.1)
    torch.testing.assert_close(shaped, torch.tensor([0.0, -0.05, 2.1]))
    torch.testing.assert_close(whiten(torch.tensor([1.0, 3.0])), torch.tensor([-1.0, 1.0]))


def test_ppo_losses_match_hand_computed_values():
    logprobs = torch.log(torch.tensor([1.5, 0.5]))
    out = ppo_losses(
        logprobs,
        torch.zeros(2),
        advantages=torch.tensor([1.0, -1.0]),
        values=torch.tensor([1.0, 0.0]),
        old_values=torch.zeros(2),
        returns=torch.tensor([0.5, 0.5]),
        clip=0.2,
        clip_value=0.2,
    )
    # policy: max(-1.5, -1.2) = -1.2 and max(0.5, 0.8) = 0.8 -> mean -0.2
    assert math.isclose(out["policy_loss"].item(), -0.2, abs_tol=1e-6)
    # value: clipped values (0.2, 0); max((v - R)^2, (vc - R)^2) = (0.25, 0.25) -> 0.5 * 0.25
    assert math.isclose(out["value_loss"].item(), 0.125, abs_tol=1e-6)
    assert math.isclose(out["clipfrac"].item(), 1.0)
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert math.isclose(out["approx_kl"].item(), expected_kl, abs_tol=1e-6)


def test_grpo_advantages_and_loss_match_hand_computed_values():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    adv = group_advantages(rewards, 4, eps=0.0 + 1e-12)
    std = math.sqrt(1 / 3)  # sample std of (1, 0, 0, 1)
    torch.testing.assert_close(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / std)
    torch.testing.assert_close(adv[4:], torch.zeros(4))
    with pytest.raises(ValueError, match="groups of 1"):
        group_advantages(rewards, 1)
    logprobs = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -2.0])
    out = grpo_loss(logprobs, logprobs.clone(), ref, torch.tensor([2.0, -1.0]), clip=0.2, kl_coef=0.1)
    kl0 = math.exp(-0.5) + 0.5 - 1  # k3 with ref - logp = -0.5
    assert math.isclose(out["loss"].item(), (-2.0 + 1.0) / 2 + 0.1 * kl0 / 2, abs_tol=1e-6)
    assert math.isclose(out["kl"].item(), kl0 / 2, abs_tol=1e-6)
    # A ratio above 1 + clip with a positive advantage is clipped: no gradient through it.
    high = torch.tensor([0.5], requires_grad=True)
    grpo_loss(high, torch.zeros(1), high.detach(), torch.ones(1), 0.2, 0.0)["loss"].backward()
    assert high.grad.abs().item() == 0.0


def small_envs(n: int, **kwargs):
    return gym.make_vec(
        "PromptLoop-v0", num_envs=n, vectorization_mode="vector_entry_point", num_inference_steps=6,
        num_refinements=2, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_one_update_on_the_toy_world_changes_only_lora_and_value_head(algo):
    agent = load_toy_policy()
    agent.add_lora(r=4)
    if algo == "ppo":
        agent.add_value_head()
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    head_before = None if agent.value_head is None else agent.value_head.weight.detach().clone()
    envs = small_envs(4)
    torch.manual_seed(0)
    episodes = collect(agent, envs, ["a red circle"] * 2 + ["a blue square on the left"] * 2, [0, 1, 2, 3])
    assert all(len(e.turns) == 2 and e.image.shape == (32, 32, 3) for e in episodes)
    # Only the agent's own tokens form the trained sequence: no chat or image token is among them.
    for e in episodes:
        assert len(e.tokens("logprobs")) == e.num_tokens == sum(len(t.response_ids) for t in e.turns)
    annotate(agent, episodes, values=algo == "ppo")
    optimizer = torch.optim.AdamW(agent.trainable_parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    episodes[0].reward, episodes[1].reward = 1.0, 0.0  # make sure the first group has a non-zero advantage
    if algo == "grpo":
        metrics = grpo_update(agent, episodes, optimizer, GRPOSettings(group_size=2), rng)
    else:
        metrics = ppo_update(agent, episodes, optimizer, PPOSettings(minibatches=2), rng)
        assert "losses/explained_variance" in metrics and not torch.equal(agent.value_head.weight, head_before)
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "losses/explained_variance")
    changed = {n for n, p in agent.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    envs.close()


def test_baselines_share_the_agent_interface():
    obs = observations(3)
    assert Identity().act(obs) == list(obs["query"])
    assert FixedSuffix(", vivid").act(obs) == [q + ", vivid" for q in obs["query"]]
    bank = RandomBank(["{query} please", "x"], seed=0)
    assert all(a in (q + " please", "x") for a, q in zip(bank.act(obs), obs["query"], strict=True))
    one_shot = OneShot(FixedSuffix("!"))
    first = dict(obs, prompt=obs["query"])
    assert one_shot.act(first) == [q + "!" for q in obs["query"]]
    later = dict(obs, progress=obs["progress"] + 0.1)
    assert one_shot.act(later) == list(obs["prompt"])  # later refinements hold the prompt in force

    # Turns are counted, not guessed from the prompt: a first prompt equal to the query is acted on once.
    class Counting(Identity):
        calls = 0

        def act(self, observations):
            self.calls += 1
            return super().act(observations)

    inner = Counting()
    counted = OneShot(inner)
    assert counted.act(dict(obs, prompt=obs["query"], progress=obs["progress"] * 0)) == list(obs["query"])
    assert counted.act(dict(obs, prompt=obs["query"], progress=obs["progress"] + 0.1)) == list(obs["query"])
    assert inner.calls == 1
    with pytest.raises(ValueError, match="identity"):
        make_baseline("nope")
    envs = small_envs(2)
    episodes = collect(OneShot(FixedSuffix(" on a white background")), envs, ["a red circle"] * 2, [5, 6])
    assert [e.prompts for e in episodes] == [["a red circle on a white background"] * 2] * 2  # one per refinement
    envs.close()


# ---------------------------------------------------------------------------------------------------------
# Correctness at the paper's scale (sampling = scored distribution, precision, defaults, micro-batches)


def test_checkpoint_generation_config_cannot_change_the_sampled_distribution():
    model, tokenizer, image_processor = tiny_qwen2_vl(WORDS)
    g = model.generation_config
    # Every processor a checkpoint may set: each changes sampled tokens if generate() honoured it.
    g.repetition_penalty, g.no_repeat_ngram_size, g.top_k, g.top_p = 1.8, 1, 3, 0.5
    g.min_p, g.typical_p, g.epsilon_cutoff, g.min_new_tokens = 0.3, 0.5, 0.05, 6
    g.temperature, g.do_sample = 0.1, True
    agent = MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, max_new_tokens=8, temperature=1.3)
    assert agent.checkpoint_generation_config.repetition_penalty == 1.8  # kept for reference
    torch.manual_seed(0)
    turns = agent.generate(observations(8))
    for turn, scored in zip(turns, agent.score(turns).logprobs, strict=True):
        torch.testing.assert_close(scored, turn.logprobs, atol=1e-4, rtol=0)
    # With n-gram bans or min_new_tokens honoured, no answer could repeat a token or stop early.
    assert any(len(set(t.response_ids.tolist())) < len(t.response_ids) or len(t.response_ids) < 6 for t in turns)


def test_training_refuses_nucleus_sampling(tmp_path, monkeypatch):
    import importlib

    train_module = importlib.import_module("agents.train")  # the module (agents.train is also the function)
    monkeypatch.setattr(train_module, "load_agent", lambda *args, **kwargs: load_toy_policy(top_p=0.9))
    config = train_module.TrainConfig(updates=1, queries_per_update=1, group_size=2, out=str(tmp_path), device="cpu")
    with pytest.raises(train_module.ConfigError, match="top_p=0.9"):
        train_module.train(config, progress=False)


def test_policy_autocast_never_reaches_the_diffusion_model():
    agent = load_toy_policy()
    agent.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    envs = small_envs(2)
    queries, seeds = ["a red circle", "a blue square on the left"], [3, 4]
    torch.manual_seed(0)
    sampled = collect(agent, envs, queries, seeds)

    class Replay:
        def __init__(self, prompts):
            self.prompts, self.turn = prompts, 0

        def act(self, observations):
            out = [p[self.turn] for p in self.prompts]
            self.turn += 1
            return out

    replayed = collect(Replay([e.prompts for e in sampled]), envs, queries, seeds)
    for a, b in zip(sampled, replayed, strict=True):
        assert np.array_equal(a.image, b.image)
    envs.close()


def test_each_algorithm_gets_its_own_defaults():
    from agents.train import TrainConfig

    assert TrainConfig(algo="ppo").algorithm_settings() == PPOSettings()
    assert TrainConfig(algo="grpo").algorithm_settings() == GRPOSettings()
    resolved = TrainConfig(algo="ppo").resolved()
    assert (resolved.epochs, resolved.minibatches, resolved.kl_coef) == (2, 2, 0.05)
    assert TrainConfig(algo="ppo", epochs=3).algorithm_settings().epochs == 3  # explicit settings win
    assert TrainConfig(algo="grpo", group_size=6).algorithm_settings().group_size == 6


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_micro_batches_give_the_unsplit_gradient(algo):
    def gradients(micro_batch_size: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        agent = load_toy_policy()
        agent.add_lora(r=4)
        if algo == "ppo":
            agent.add_value_head()
        envs = small_envs(4)
        torch.manual_seed(1)
        episodes = collect(agent, envs, ["a red circle"] * 2 + ["a blue square on the left"] * 2, [0, 1, 2, 3])
        envs.close()
        annotate(agent, episodes, values=algo == "ppo")
        for e, r in zip(episodes, [1.0, 0.0, 0.3, 0.7], strict=True):
            e.reward = r
        params = agent.trainable_parameters()
        optimizer = torch.optim.SGD(params, lr=0.0)  # keep the weights: compare the gradients only
        rng = np.random.default_rng(0)
        if algo == "grpo":
            grpo_update(agent, episodes, optimizer, GRPOSettings(group_size=2, micro_batch_size=micro_batch_size), rng)
        else:
            settings = PPOSettings(epochs=1, minibatches=1, micro_batch_size=micro_batch_size)
            ppo_update(agent, episodes, optimizer, settings, rng)
        return [p.grad.detach().clone() for p in params]

    whole, split = gradients(0), gradients(1)
    assert any(g.abs().sum() > 0 for g in whole)
    for a, b in zip(whole, split, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_recomputed_logprobs_match_the_sampled_ones():
    agent = load_toy_policy()
    envs = small_envs(2)
    torch.manual_seed(0)
    episodes = collect(agent, envs, ["a red circle"] * 2, [0, 1])
    envs.close()
    sampled = [e.tokens("logprobs").clone() for e in episodes]
    annotate(agent, episodes, logprobs=True)
    for e, before in zip(episodes, sampled, strict=True):
        torch.testing.assert_close(e.tokens("logprobs"), before, atol=1e-4, rtol=0)
