"""Tiny image-text-to-text models of real transformers classes, built in memory from configs.

They serve the toy policy (trained on the toy world, shipped in ``agents/toy``) and the tests: the same
classes as Qwen2-VL / Qwen2.5-VL, LLaVA and Idefics3 (SmolVLM's family), with a word-level chat tokenizer
(the ``tokenizers`` library) whose vocabulary is a word list, a chat template in the ChatML form Qwen uses,
and the PIL image processors (no torchvision needed). Nothing here downloads anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["CHAT_TEMPLATE", "CHAT_WORDS", "build_chat_tokenizer", "tiny_idefics3", "tiny_llava", "tiny_qwen2_vl"]

#: Special tokens of the ChatML template, Qwen-VL's vision markers and LLaVA's image token.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",
    "[UNK]",
)
#: Words of the chat scaffolding every tiny tokenizer knows (roles, the agent's message fields, tags).
CHAT_WORDS: tuple[str, ...] = (
    tuple("system user assistant query prompt progress refine the for a model".split())
    + tuple(",.:;%!?-'\"()")
    + tuple("0123456789")
)

#: ChatML (Qwen's format): string or list-of-parts contents; images become the family's image placeholder.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ image_placeholder | default('<|vision_start|><|image_pad|><|vision_end|>') }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_chat_tokenizer(words: Iterable[str], *, image_placeholder: str | None = None):
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` + :data:`CHAT_WORDS` + the special tokens.

    Text is split at spaces (kept as a leading "▁", so decoding restores the spacing), punctuation, digits
    and newlines; unknown words become ``[UNK]``. ``eos`` is ``<|im_end|>``, ``pad`` is ``<|endoftext|>``,
    padding is on the left (for batched generation).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.setdefault("\n", len(vocab))
    for word in (*CHAT_WORDS, *words):
        for form in (word, "▁" + word):
            vocab.setdefault(form, len(vocab))
    model = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(prepend_scheme="never"),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    model.decoder = decoders.Metaspace(prepend_scheme="never")
    model.add_special_tokens(list(SPECIAL_TOKENS))
    model.add_tokens(["<prompt>", "</prompt>"])  # the answer's tags: whole tokens, kept when decoding
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
    )
    template = CHAT_TEMPLATE
    if image_placeholder is not None:
        template = template.replace(
            "image_placeholder | default('<|vision_start|><|image_pad|><|vision_end|>')", repr(image_placeholder)
        )
    tokenizer.chat_template = template
    return tokenizer


def tiny_qwen2_vl(
    words: Iterable[str] = (),
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_depth: int = 1,
    image_size: int = 32,
    patch_size: int = 4,
    seed: int = 0,
    qwen2_5: bool = False,
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, image_processor)``: a seeded random Qwen2-VL (or Qwen2.5-VL) small enough for CPU.

    The image processor resizes every image to ``image_size`` squared (``patch_size`` patches merged 2 x 2,
    so ``(image_size / patch_size / 2) ** 2`` image tokens per image).
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = build_chat_tokenizer(words)
    ids = tokenizer.convert_tokens_to_ids
    heads = max(1, hidden_size // 32)
    head_dim = hidden_size // (2 * heads)
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2 * heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        # M-RoPE splits each head's rotary half-dimension into (time, height, width) sections.
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6],
        },
        bos_token_id=ids("<|im_start|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision_config = dict(
        depth=vision_depth,
        embed_dim=32,
        hidden_size=hidden_size,
        num_heads=2,
        patch_size=patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        in_channels=3,
    )
    special = dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    if qwen2_5:
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model

        vision_config.update(out_hidden_size=hidden_size, intermediate_size=64, fullatt_block_indexes=[0])
        vision_config["window_size"] = patch_size * 4
    else:
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model
    config = Config(text_config=text_config, vision_config=vision_config, **special)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Model(config).eval()
    model.generation_config.eos_token_id = text_config["eos_token_id"]
    model.generation_config.pad_token_id = text_config["pad_token_id"]
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=pixels,
        max_pixels=pixels,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return model, tokenizer, image_processor


def tiny_llava(
    words: Iterable[str] = (), *, hidden_size: int = 64, num_layers: int = 2, image_size: int = 16, seed: int = 0
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, image_processor)``: a seeded random LLaVA (CLIP vision tower + Llama) for CPU."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = build_chat_tokenizer(words, image_placeholder="<image>")
    ids = tokenizer.convert_tokens_to_ids
    patch = 4
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=ids("<|im_start|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=ids("<image>"),
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = text_config.eos_token_id
    model.generation_config.pad_token_id = text_config.pad_token_id
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return model, tokenizer, image_processor


def tiny_idefics3(words: Iterable[str] = (), *, hidden_size: int = 64, image_size: int = 32, seed: int = 0):
    """``(model, processor)``: a seeded random Idefics3 (the SmolVLM family's base) with its processor
    (``Idefics3Processor`` over the PIL image processor, no image splitting: 4 image tokens per image)."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = build_chat_tokenizer(words, image_placeholder="<image>")
    extra = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    extra += [f"<row_{i}_col_{j}>" for i in range(1, 4) for j in range(1, 4)]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    ids = tokenizer.convert_tokens_to_ids
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    patch = image_size // 4
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(image_size // patch) ** 2 // 4,  # patches merged 2 x 2 (scale_factor 2)
        chat_template=tokenizer.chat_template,
    )
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=image_size, patch_size=patch,
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
        ),
        image_token_id=ids("<image>"),
        scale_factor=2,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model, processor
