"""The toy policy: a tiny Qwen2-VL that rewrites toy-world queries, the default agent of ``promptloop train``.

It is a ``Qwen2VLForConditionalGeneration`` (0.137 M parameters) over a word-level tokenizer of the toy
grammar, warm-started by supervised training (:mod:`agents.toy.sft`) to rewrite a query into its canonical,
fuller caption (:func:`promptloop_env.toy.grammar.describe`), and shipped as safetensors in
``agents/toy/weights``. Load it with ``MLLMAgent.from_pretrained(TOY_POLICY_DIR)`` or :func:`load_toy_policy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TOY_POLICY_DIR", "TOY_POLICY_SETTINGS", "build_toy_policy", "load_toy_policy"]

TOY_POLICY_DIR = Path(__file__).resolve().parent / "weights"
#: The toy policy's agent settings: no system message (the tiny model has no use for one), a short user
#: message in the grammar's words, room for the longest canonical caption, and temperature 1.5: after
#: supervised training the model is nearly deterministic at 1.0 (one distinct answer in 16 samples), which
#: leaves RL nothing to compare; at 1.5 about a third of the answers differ from the canonical caption.
TOY_POLICY_SETTINGS: dict[str, Any] = {
    "system_prompt": None,
    "user_template": "query: {query}\nprompt: {prompt}\nprogress: {progress}%",
    "temperature": 1.5,
    "top_p": 1.0,
    "max_new_tokens": 24,
}


def build_toy_policy(seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Any:
    """A fresh (random) toy policy as an :class:`~agents.mllm.MLLMAgent`; :mod:`agents.toy.sft` trains it."""
    from promptloop_env.toy.grammar import vocabulary

    from ..mllm import MLLMAgent
    from ..tiny import tiny_qwen2_vl

    model, tokenizer, image_processor = tiny_qwen2_vl(
        vocabulary(), hidden_size=hidden_size, num_layers=num_layers, image_size=32, patch_size=4, seed=seed
    )
    return MLLMAgent(
        model, tokenizer=tokenizer, image_processor=image_processor, name="toy-policy", **TOY_POLICY_SETTINGS
    )


def load_toy_policy(**overrides: Any) -> Any:
    """The shipped, supervised toy policy (offline, from ``TOY_POLICY_DIR``)."""
    from ..mllm import AgentError, MLLMAgent

    if not (TOY_POLICY_DIR / "model.safetensors").exists():
        raise AgentError(
            f"The toy policy's weights are missing from {TOY_POLICY_DIR}; train them with `python -m agents.toy.sft`."
        )
    return MLLMAgent.from_pretrained(TOY_POLICY_DIR, **overrides)
