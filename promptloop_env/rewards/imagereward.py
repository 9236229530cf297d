"""ImageReward (Xu et al., 2023; THUDM/ImageReward): BLIP's ViT, a BERT text encoder that cross-attends to the
image, and an MLP on the ``[CLS]`` feature, normalised by the training set's mean and std.

The ``image-reward`` package does not run on transformers 5, so the checkpoint (``ImageReward.pt``, a torch
pickle read with ``weights_only=True``) is mapped onto transformers' BLIP modules (``BlipVisionModel``, the
``BlipTextModel`` of ``BlipForImageTextRetrieval``) by :func:`convert_imagereward_state_dict`, written from the
upstream architecture (BLIP's timm-style ViT and ``med.py`` BERT).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._learned import (
    LearnedReward,
    RatingHead,
    clip_image_processor,
    hub_file,
    load_pretrained,
    load_state_dict,
    require,
)
from ._learned import pixel_values as _pixel_values
from .base import register_reward

__all__ = ["IMAGEREWARD_ID", "ImageReward", "ImageRewardModel", "convert_imagereward_state_dict"]

IMAGEREWARD_ID = "THUDM/ImageReward"
#: BLIP's tokenizer: BERT base uncased plus ``[DEC]`` (bos) and ``[ENC]``, as BLIP's ``init_tokenizer``.
BLIP_TOKENIZER_ID = "bert-base-uncased"
#: Mean and std of the head's raw output on ImageReward's training set (the upstream normalisation).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
#: Token length of a query, as upstream (longer queries are truncated).
MAX_TOKENS = 35


class ImageRewardModel(nn.Module):
    """ImageReward on transformers' BLIP classes: ``(pixel_values, input_ids, attention_mask) -> reward [N]``.

    Args:
        vision_config: a ``BlipVisionConfig`` (ImageReward: ViT-L/16, 224 px, LayerNorm eps 1e-6).
        text_config: a ``BlipTextConfig`` with cross-attention (``is_decoder=True`` builds it; the encoder runs
            bidirectionally) and ``encoder_hidden_size`` equal to the vision width.
    """

    def __init__(self, vision_config: Any, text_config: Any):
        super().__init__()
        transformers = require("transformers", "imagereward", IMAGEREWARD_ID)
        from transformers.models.blip.modeling_blip_text import BlipTextModel

        self.vision_model = transformers.BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = RatingHead(text_config.hidden_size)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Rewards ``[N]`` (float32): the head on the text encoder's ``[CLS]`` state, standardised."""
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        )
        cls = text.last_hidden_state[:, 0].to(self.head.layers[0].weight.dtype)
        return (self.head(cls).float() - REWARD_MEAN) / REWARD_STD


# Upstream ViT (timm-style, under ``blip.visual_encoder.``) -> transformers BlipVisionModel (under ``vision_model.``).
_VISION_RENAMES = [
    (r"cls_token", "embeddings.class_embedding"),
    (r"pos_embed", "embeddings.position_embedding"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embedding.\1"),
    (r"blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),  # same [q; k; v] row layout
    (r"blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"blocks\.(\d+)\.mlp\.fc(1|2)\.", r"encoder.layers.\1.mlp.fc\2."),
    (r"norm\.(weight|bias)", r"post_layernorm.\1"),
]
# Keys of the upstream checkpoint that the score does not use.
_UNUSED = re.compile(r"^blip\.(vision_proj|text_proj|itm_head)\.|\.position_ids$")


def convert_imagereward_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageReward's checkpoint keys (``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.layers.*``) ->
    :class:`ImageRewardModel` keys. BLIP's ``med.py`` BERT and transformers' ``BlipTextModel`` share their key
    names; the ViT is renamed block by block.

    Raises:
        KeyError: for a key of neither part, so a different checkpoint is not half-loaded silently.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if _UNUSED.search(key):
            continue
        if key.startswith("blip.visual_encoder."):
            rest = key.removeprefix("blip.visual_encoder.")
            for pattern, replacement in _VISION_RENAMES:
                new, count = re.subn(f"^{pattern}", replacement, rest)
                if count:
                    out["vision_model." + new] = value
                    break
            else:
                unknown.append(key)
        elif key.startswith("blip.text_encoder."):
            out["text_encoder." + key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp.layers."):
            out["head." + key.removeprefix("mlp.")] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"Not an ImageReward checkpoint: unexpected keys {unknown[:5]} ({len(unknown)} in all).")
    return out


def _configs(state: dict[str, torch.Tensor], med_config: dict[str, Any]) -> tuple[Any, Any]:
    """BLIP vision and text configs: sizes from the checkpoint's shapes, the rest from BLIP's ``med_config``."""
    transformers = require("transformers", "imagereward", IMAGEREWARD_ID)
    prefix = "blip.visual_encoder."
    width = state[prefix + "cls_token"].shape[-1]
    patch = state[prefix + "patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state[prefix + "pos_embed"].shape[1] - 1)
    depth = len({k.split(".")[3] for k in state if k.startswith(prefix + "blocks.")})
    vision = transformers.BlipVisionConfig(
        hidden_size=width,
        intermediate_size=state[prefix + "blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=depth,
        num_attention_heads=max(1, width // 64),  # BLIP's ViTs use 64-wide heads (base 12, large 16)
        image_size=grid * patch,
        patch_size=patch,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    words = state["blip.text_encoder.embeddings.word_embeddings.weight"]
    text = transformers.BlipTextConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        encoder_hidden_size=width,
        intermediate_size=med_config.get("intermediate_size", 4 * words.shape[1]),
        num_hidden_layers=len({k.split(".")[4] for k in state if k.startswith("blip.text_encoder.encoder.layer.")}),
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=state["blip.text_encoder.embeddings.position_embeddings.weight"].shape[0],
        hidden_act=med_config.get("hidden_act", "gelu"),
        layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        pad_token_id=med_config.get("pad_token_id", 0),
        bos_token_id=None,
        sep_token_id=None,
        is_decoder=True,  # builds the cross-attention layers; forward runs as an encoder
    )
    return vision, text


def load_imagereward(checkpoint: str | os.PathLike, med_config: str | os.PathLike | dict[str, Any]) -> ImageRewardModel:
    """An :class:`ImageRewardModel` from an upstream checkpoint file and BLIP's ``med_config.json`` (a path or
    the parsed dict), in float32 and eval mode."""
    state = load_state_dict(checkpoint)
    if not isinstance(med_config, dict):
        med_config = json.loads(Path(med_config).read_text())
    vision, text = _configs(state, med_config)
    model = ImageRewardModel(vision, text)
    missing, unexpected = model.load_state_dict(convert_imagereward_state_dict(state), strict=False)
    if missing or unexpected:
        raise KeyError(
            f"ImageReward checkpoint {str(checkpoint)!r} does not fit: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    return model.eval()


def blip_tokenizer(repo_or_path: str | os.PathLike = BLIP_TOKENIZER_ID) -> Any:
    """BLIP's tokenizer: a BERT tokenizer with ``[DEC]`` as bos and ``[ENC]`` added (ids 30522, 30523 on BERT
    base uncased), unless the saved tokenizer has them already."""
    transformers = require("transformers", "imagereward", IMAGEREWARD_ID)
    tokenizer = load_pretrained("imagereward", transformers.AutoTokenizer.from_pretrained, repo_or_path)
    if "[DEC]" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    if "[ENC]" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageReward(LearnedReward):
    """ImageReward: human preference for text-to-image generations, roughly standard normal (about -2..2).

    Args:
        model: an :class:`ImageRewardModel` (see :meth:`from_pretrained` for the upstream checkpoint).
        tokenizer: BLIP's tokenizer (:func:`blip_tokenizer`).
        image_size: the ViT's input size (224 upstream; default: the model's).
        **kwargs: ``device``, ``dtype``, ``batch_size`` (see :class:`~promptloop_env.rewards._learned.LearnedReward`).

    Example:
        >>> reward = ImageReward.from_pretrained()  # doctest: +SKIP
        >>> reward(images, ["a red circle"] * len(images))  # doctest: +SKIP
    """

    name = "imagereward"
    model_id = IMAGEREWARD_ID

    def __init__(self, model: ImageRewardModel, tokenizer: Any, *, image_size: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = self._place(model)
        self.model.head.float()  # upstream runs the head in float32
        self.tokenizer = tokenizer
        self.processor = clip_image_processor(image_size or model.vision_model.config.image_size)

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike = IMAGEREWARD_ID,
        *,
        checkpoint: str = "ImageReward.pt",
        med_config: str = "med_config.json",
        tokenizer: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> ImageReward:
        """Load the upstream checkpoint from the Hugging Face cache (``THUDM/ImageReward``: ``ImageReward.pt``,
        ``med_config.json``) or a local folder holding both.

        Args:
            repo_or_path: the Hub model id, a folder, or the checkpoint file (``med_config.json`` beside it).
            checkpoint: the checkpoint's file name in it.
            med_config: the BLIP text config's file name in it.
            tokenizer: BLIP's tokenizer (default: the folder's, if it has one, else ``bert-base-uncased``).
            **kwargs: ``device``, ``dtype``, ``batch_size``.

        Raises:
            FileNotFoundError: a file is in neither the folder nor the cache; the message says how to fetch it.
        """
        if Path(repo_or_path).is_file():  # the checkpoint itself: med_config.json lies beside it
            repo_or_path, checkpoint = Path(repo_or_path).parent, Path(repo_or_path).name
        model = load_imagereward(
            hub_file(cls.name, repo_or_path, checkpoint), hub_file(cls.name, repo_or_path, med_config)
        )
        if tokenizer is None:
            folder = Path(repo_or_path)
            tokenizer = folder if (folder / "tokenizer_config.json").is_file() else BLIP_TOKENIZER_ID
        return cls(model, blip_tokenizer(tokenizer), **kwargs)

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        text = self.tokenizer(
            queries, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        pixels = _pixel_values(self.processor, images, self.device, self.dtype)
        return self.model(pixels, text["input_ids"], text["attention_mask"])


register_reward("imagereward")(lambda **options: ImageReward.from_pretrained(**options))
