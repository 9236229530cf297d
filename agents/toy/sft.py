"""Supervised warm start of the toy policy: rewrite a toy-world query into its canonical, fuller caption.

    python -m agents.toy.sft                    # about 3 minutes on 2 CPU cores; writes agents/toy/weights
    python -m agents.toy.sft --steps 50 --out /tmp/policy   # a quick run elsewhere

Each example is one observation as the env would show it: a preview (a render of the query's scene or of a
random scene, so the policy does not learn to trust the image blindly), the query, the prompt in force (the
query, or its canonical caption later in an episode) and a progress value; the target is
``describe(parse(query))`` followed by the end-of-turn token. The loss is the mean negative log-likelihood of
the target tokens, computed by the same :meth:`MLLMAgent.score` the RL trainers use. Seeded; the weights are
written atomically (safetensors) with ``sft_log.md`` beside them.
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import dataclass

import numpy as np
import torch

from promptloop_env.toy.grammar import caption, describe, parse, random_scene, sample_queries, spec_of, split_of
from promptloop_env.toy.renderer import render

from ..checkpoint import atomic_folder
from ..mllm import Turn
from . import TOY_POLICY_DIR, build_toy_policy


@dataclass
class SFTConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    eval_every: int = 250
    eval_queries: int = 200
    out: str = str(TOY_POLICY_DIR)


def example(rng: np.random.Generator) -> tuple[dict, str]:
    """One (observation, target answer) pair from the train split."""
    while True:
        scene = random_scene(rng)
        if split_of(spec_of(scene)) == "train":
            break
    query = caption(scene, rng, drop=float(rng.uniform(0.0, 0.6)))
    target = describe(parse(query))
    shown = scene if rng.random() < 0.5 else random_scene(rng)
    progress = float(rng.integers(1, 20)) / 20
    prompt = query if rng.random() < 0.5 else target
    return {"preview": render(shown, rng=rng), "query": query, "prompt": prompt, "progress": progress}, target


def supervised_turns(agent, batch: list[tuple[dict, str]]) -> list[Turn]:
    """Turns whose response is the target answer followed by the end-of-turn token."""
    contexts, _ = agent._context_ids([o for o, _ in batch])
    eos = agent.tokenizer.eos_token_id
    turns = []
    for (observation, target), context in zip(batch, contexts, strict=True):
        ids = agent.tokenizer(target, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        response = torch.cat([ids, torch.tensor([eos])])
        turns.append(Turn(observation["preview"], context, response, torch.zeros(len(response)), target, target, False))
    return turns


def evaluate(agent, n: int, seed: int) -> dict[str, float]:
    """Greedy answers on held-out (test-split) queries: exact canonical match and parseable rate."""
    queries = sample_queries(n, "test", seed=seed, drop=0.3)
    rng = np.random.default_rng(seed)
    observations = [{"preview": render(random_scene(rng)), "query": q, "prompt": q, "progress": 0.25} for q in queries]
    exact = parsed = 0
    for start in range(0, n, 50):
        for obs, turn in zip(
            observations[start : start + 50], agent.generate(observations[start : start + 50], greedy=True), strict=True
        ):
            exact += turn.prompt == describe(parse(obs["query"]))
            try:
                parse(turn.prompt)
                parsed += not turn.fallback
            except ValueError:
                pass
    return {"exact": exact / n, "parseable": parsed / n}


def main(argv: list[str] | None = None) -> None:
    defaults = SFTConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    config = SFTConfig(**vars(parser.parse_args(argv)))
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    agent = build_toy_policy(config.seed, config.hidden_size, config.num_layers)
    agent.model.train()
    params = sum(p.numel() for p in agent.model.parameters())
    optimizer = torch.optim.AdamW(agent.model.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    log = [
        f"# Toy policy SFT ({datetime.date.today().isoformat()})",
        "",
        f"`python -m agents.toy.sft` with {config}",
        "",
    ]
    log += [f"Qwen2VLForConditionalGeneration, {params / 1e6:.3f} M parameters, vocabulary {len(agent.tokenizer)}.", ""]
    log += ["| step | loss | held-out exact | parseable | minutes |", "|---|---|---|---|---|"]
    start = time.time()
    losses = []
    for step in range(1, config.steps + 1):
        turns = supervised_turns(agent, [example(rng) for _ in range(config.batch_size)])
        loss = -torch.cat(agent.score(turns).logprobs).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            agent.model.eval()
            metrics = evaluate(agent, config.eval_queries, seed=1234)
            agent.model.train()
            minutes = (time.time() - start) / 60
            loss_avg = np.mean(losses[-50:])
            row = f"| {step} | {loss_avg:.4f} | {metrics['exact']:.3f} | {metrics['parseable']:.3f} | {minutes:.1f} |"
            print(row, flush=True)
            log.append(row)
    agent.model.eval()
    with atomic_folder(config.out) as folder:
        agent.save_pretrained(folder)
        (folder / "sft_log.md").write_text("\n".join(log) + "\n")
    print(f"saved the toy policy to {config.out}")


if __name__ == "__main__":
    main()
