"""Over-optimisation diagnostics: held-out rewards on the trained reward's images, and prompt drift.

An agent trained on one reward can learn to please it at the cost of what the user asked for (reward
hacking). Two signals show it while training runs, at no extra denoising cost:

- held-out rewards: other rewards scored on the SAME final images and queries (images are what rewards
  grade, so any registered reward can be applied after the fact), e.g. train on ``jpeg_compressibility``
  and watch ``toy_alignment``: the trained reward rising while the held-out one falls is over-optimisation;
- prompt drift: how far the prompts the agent writes move away from the query, by word overlap (Jaccard
  similarity of the word sets, lower-cased) and by the cosine similarity of text embeddings. The default
  embedding is the agent's own input-embedding table, mean-pooled over each text's tokens: free (no second
  model), defined for any :class:`~agents.mllm.MLLMAgent`, and frozen under LoRA, so it is the same ruler
  throughout a run. :func:`clip_text_embedder` gives a CLIP text encoder's pooled embedding instead (e.g. the
  toy diffusion model's own, ``load_toy_pipeline().text_encoder``), the space the denoiser is conditioned in.

:func:`episode_diagnostics` turns a batch of finished episodes into the scalars that ``agents.train`` logs
under ``diagnostics/heldout/<name>``, ``diagnostics/prompt_jaccard``, ``diagnostics/prompt_drift`` (1 -
Jaccard) and ``diagnostics/prompt_embedding_similarity``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "agent_text_embedder",
    "clip_text_embedder",
    "cosine_similarity",
    "embedding_similarity",
    "episode_diagnostics",
    "heldout_scores",
    "jaccard",
    "make_heldout_rewards",
    "prompt_drift",
]

Embedder = Callable[[Sequence[str]], np.ndarray]

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(str(text).lower()))


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the lower-cased word sets of ``a`` and ``b`` (``|A & B| / |A | B|``; 1.0 for two
    texts without words)."""
    wa, wb = _words(a), _words(b)
    union = wa | wb
    return len(wa & wb) / len(union) if union else 1.0


def prompt_drift(queries: Sequence[str], prompts: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean word overlap of each episode's prompts with its query.

    Args:
        queries: one query per episode.
        prompts: the prompts written in each episode (all refinements).

    Returns:
        ``prompt_jaccard`` (mean Jaccard similarity over all prompts of all episodes), ``prompt_drift`` (1 minus
        it), ``final_prompt_jaccard`` (the last prompt of each episode only) and ``prompt_exact`` (the fraction
        of prompts equal to the query).
    """
    if len(queries) != len(prompts):
        raise ValueError(f"prompt_drift needs one prompt list per query; got {len(queries)} and {len(prompts)}.")
    pairs = [(q, p) for q, ps in zip(queries, prompts, strict=True) for p in ps]
    if not pairs:
        raise ValueError("prompt_drift needs at least one prompt.")
    overlap = float(np.mean([jaccard(q, p) for q, p in pairs]))
    finals = [jaccard(q, ps[-1]) for q, ps in zip(queries, prompts, strict=True) if ps]
    return {
        "prompt_jaccard": overlap,
        "prompt_drift": 1.0 - overlap,
        "final_prompt_jaccard": float(np.mean(finals)),
        "prompt_exact": float(np.mean([q.strip() == p.strip() for q, p in pairs])),
    }


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[N, D]`` arrays (0 for an all-zero row)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"cosine_similarity needs two [N, D] arrays of one shape; got {a.shape} and {b.shape}.")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def agent_text_embedder(agent: Any) -> Embedder:
    """Texts -> the mean of their tokens' input embeddings in ``agent``'s language model (``[N, D]``).

    ``agent`` is an :class:`~agents.mllm.MLLMAgent` (its ``model`` and ``tokenizer``). Special tokens are left
    out; a text with no tokens embeds to zeros.
    """
    table = agent.model.get_input_embeddings()
    tokenizer = agent.tokenizer

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            ids = tokenizer(str(text), add_special_tokens=False)["input_ids"]
            if ids:
                vectors = table(torch.tensor(ids, device=table.weight.device))
                rows.append(vectors.float().mean(0).cpu().numpy())
            else:
                rows.append(np.zeros(table.weight.shape[1], dtype=np.float32))
        return np.stack(rows)

    return embed


def clip_text_embedder(text_encoder: Any, tokenizer: Any, batch_size: int = 64) -> Embedder:
    """Texts -> a ``CLIPTextModel``'s pooled output (``[N, D]``), truncated to the tokenizer's limit."""

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = [str(t) for t in texts[start : start + batch_size]]
            ids = tokenizer(
                chunk, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(text_encoder.device)
            out.append(text_encoder(ids).pooler_output.float().cpu().numpy())
        return np.concatenate(out)

    return embed


def embedding_similarity(queries: Sequence[str], prompts: Sequence[Sequence[str]], embed: Embedder) -> float:
    """Mean cosine similarity between each prompt and its episode's query under ``embed``."""
    pairs = [(q, p) for q, ps in zip(queries, prompts, strict=True) for p in ps]
    if not pairs:
        raise ValueError("embedding_similarity needs at least one prompt.")
    q, p = zip(*pairs, strict=True)
    return float(cosine_similarity(embed(list(q)), embed(list(p))).mean())


def make_heldout_rewards(names: str | Sequence[str]) -> dict[str, Any]:
    """Registered rewards by name (a list, or one comma-separated string), built once."""
    from promptloop_env.rewards import make_reward

    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    return {name: make_reward(name) for name in names}


def heldout_scores(rewards: dict[str, Any], images: Sequence[np.ndarray], queries: Sequence[str]) -> dict[str, float]:
    """Mean of each reward over the final ``images`` (``uint8 H x W x 3`` each) scored against ``queries``."""
    batch = np.stack([np.asarray(i) for i in images])
    return {name: float(np.mean(reward(batch, list(queries)))) for name, reward in rewards.items()}


def episode_diagnostics(
    episodes: Sequence[Any], rewards: dict[str, Any], embed: Embedder | None = None
) -> dict[str, float]:
    """The diagnostics of a batch of finished :class:`~agents.rollout.Episode` s, named for TensorBoard.

    Args:
        episodes: finished episodes (their ``image``, ``query`` and ``prompts``).
        rewards: held-out rewards by name (:func:`make_heldout_rewards`), scored on the episodes' final images.
        embed: a text embedder (:func:`agent_text_embedder`, :func:`clip_text_embedder`); ``None`` leaves the
            embedding similarity out.
    """
    queries = [e.query for e in episodes]
    prompts = [list(e.prompts) for e in episodes]
    scores = heldout_scores(rewards, [e.image for e in episodes], queries)
    out = {f"diagnostics/heldout/{k}": v for k, v in scores.items()}
    drift = prompt_drift(queries, prompts)
    out["diagnostics/prompt_jaccard"] = drift["prompt_jaccard"]
    out["diagnostics/prompt_drift"] = drift["prompt_drift"]
    if embed is not None:
        out["diagnostics/prompt_embedding_similarity"] = embedding_similarity(queries, prompts, embed)
    return out
