"""The toy policy: a tiny Qwen2-VL that rewrites toy-world queries, the default agent of ``promptloop train``.

It is a ``Qwen2VLForConditionalGeneration`` (0.34 M parameters) over a word-level tokenizer of the toy
grammar and its instructions, pretrained on generic skills over toy renders and the toy model's own previews
(:mod:`agents.toy.pretrain`: describe an image, answer questions about it, say what it lacks compared with a
text, rewrite a text) and driven in the env by the rewrite instruction alone; shipped as safetensors in
``agents/toy/weights``. Load it with ``MLLMAgent.from_pretrained(TOY_POLICY_DIR)`` or :func:`load_toy_policy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TOY_POLICY_DIR", "TOY_POLICY_SETTINGS", "build_toy_policy", "load_toy_policy"]

TOY_POLICY_DIR = Path(__file__).resolve().parent / "weights"
#: The toy policy's agent settings: no system message (the tiny model has no use for one); as user message the
#: generic rewrite instruction it was pretrained on (:data:`agents.toy.pretrain.INSTRUCTION`: "text: <query>"
#: then "rewrite the text"; the prompt in force and the progress are not shown, the preview is); room for the
#: longest caption; temperature 1.0 (its pretrained rewrites are already varied: word orders, synonyms, forms).
TOY_POLICY_SETTINGS: dict[str, Any] = {
    "system_prompt": None,
    "user_template": "text: {query}\nrewrite the text",
    "temperature": 1.0,
    "top_p": 1.0,
    "max_new_tokens": 24,
}


def build_toy_policy(
    seed: int = 0, hidden_size: int = 96, num_layers: int = 3, extra_words: tuple[str, ...] | list[str] = ()
) -> Any:
    """A fresh (random) toy policy as an :class:`~agents.mllm.MLLMAgent` over the grammar's words and
    ``extra_words`` (the instructions'); :mod:`agents.toy.pretrain` trains it."""
    from promptloop_env.toy.grammar import vocabulary

    from ..mllm import MLLMAgent
    from ..tiny import tiny_qwen2_vl

    model, tokenizer, image_processor = tiny_qwen2_vl(
        [*vocabulary(), *extra_words],
        hidden_size=hidden_size,
        num_layers=num_layers,
        image_size=32,
        patch_size=4,
        seed=seed,
    )
    return MLLMAgent(
        model, tokenizer=tokenizer, image_processor=image_processor, name="toy-policy", **TOY_POLICY_SETTINGS
    )


def load_toy_policy(**overrides: Any) -> Any:
    """The shipped, supervised toy policy (offline, from ``TOY_POLICY_DIR``)."""
    from ..mllm import AgentError, MLLMAgent

    if not (TOY_POLICY_DIR / "model.safetensors").exists():
        raise AgentError(
            f"The toy policy's weights are missing from {TOY_POLICY_DIR}; "
            "train them with `python -m agents.toy.pretrain`."
        )
    return MLLMAgent.from_pretrained(TOY_POLICY_DIR, **overrides)
