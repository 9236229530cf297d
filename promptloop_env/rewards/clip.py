"""CLIP-based learned rewards: HPSv2, PickScore, the LAION aesthetic predictor and CLIPScore.

All four run on transformers' ``CLIPModel``. HPSv2 ships open_clip checkpoints (torch pickles; open_clip needs
torchvision), so :func:`convert_open_clip_state_dict` maps open_clip's ViT keys onto a ``CLIPModel`` (written from
open_clip's ``VisionTransformer``/``TextTransformer``); the others load with ``from_pretrained``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ._learned import (
    LearnedReward,
    RatingHead,
    clip_embeddings,
    clip_image_processor,
    features,
    hub_file,
    load_pretrained,
    load_state_dict,
    pixel_values,
    require,
)
from .base import register_reward

__all__ = [
    "AESTHETIC_ID",
    "CLIPSCORE_ID",
    "HPSV2_ID",
    "PICKSCORE_ID",
    "AestheticScore",
    "CLIPScore",
    "HPSv2",
    "PickScore",
    "convert_open_clip_state_dict",
    "load_open_clip_checkpoint",
]

HPSV2_ID = "xswu/HPSv2"
#: HPSv2 checkpoint files in ``xswu/HPSv2`` by version.
HPSV2_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
#: The tokenizer and processor of open_clip's ViT-H-14 (LAION-2B), which HPSv2 and PickScore were tuned from.
VIT_H_14_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PICKSCORE_ID = "yuvalkirstain/PickScore_v1"
CLIP_L_14_ID = "openai/clip-vit-large-patch14"
CLIPSCORE_ID = CLIP_L_14_ID
#: The improved aesthetic predictor's MLP (``sac+logos+ava1-l14-linearMSE.pth``) as TRL's DDPO example hosts it.
AESTHETIC_ID = "trl-lib/ddpo-aesthetic-predictor"
AESTHETIC_FILE = "aesthetic-model.pth"


# open_clip -> transformers CLIPModel. Per residual block (both towers): fused in_proj -> q/k/v, ln_1/ln_2,
# mlp.c_fc/c_proj. Towers: ``visual.`` -> ``vision_model.``, the text tower sits at the top level.
_BLOCK_RENAMES = [
    (r"ln_(1|2)\.", r"layer_norm\1."),
    (r"attn\.out_proj\.", "self_attn.out_proj."),
    (r"mlp\.c_fc\.", "mlp.fc1."),
    (r"mlp\.c_proj\.", "mlp.fc2."),
]


def _convert_block(rest: str, value: torch.Tensor, prefix: str, out: dict[str, torch.Tensor]) -> bool:
    index, _, name = rest.partition(".")
    base = f"{prefix}encoder.layers.{index}."
    if name in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = name.rsplit("_", 1)[1]  # weight | bias
        for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
            out[f"{base}self_attn.{part}_proj.{kind}"] = chunk.clone()
        return True
    for pattern, replacement in _BLOCK_RENAMES:
        new, count = re.subn(f"^{pattern}", replacement, name)
        if count:
            out[base + new] = value
            return True
    return False


def convert_open_clip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip ViT CLIP keys (as in HPSv2's checkpoints) -> transformers ``CLIPModel`` keys.

    ``visual.proj`` and ``text_projection`` are ``[width, embed]`` matrices used as ``x @ proj``; transformers
    holds them as ``Linear`` weights, transposed. The class embedding and positional embeddings move into
    ``embeddings``; ``conv1`` (no bias) is the patch embedding.

    Raises:
        KeyError: for a key this mapping does not know (e.g. a ResNet tower or LayerScale), instead of loading a
            different architecture half-way.
    """
    fixed = {
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "visual.ln_post.weight": "vision_model.post_layernorm.weight",
        "visual.ln_post.bias": "vision_model.post_layernorm.bias",
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
        "logit_scale": "logit_scale",
    }
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
        elif key == "visual.positional_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = value
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif key == "attn_mask":  # the causal mask, rebuilt by transformers
            continue
        elif key.startswith("visual.transformer.resblocks."):
            if not _convert_block(key.removeprefix("visual.transformer.resblocks."), value, "vision_model.", out):
                unknown.append(key)
        elif key.startswith("transformer.resblocks."):
            if not _convert_block(key.removeprefix("transformer.resblocks."), value, "text_model.", out):
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"Not an open_clip ViT checkpoint: unexpected keys {unknown[:5]} ({len(unknown)} in all).")
    return out


def load_open_clip_checkpoint(
    checkpoint: str | os.PathLike | dict[str, torch.Tensor],
    tokenizer: Any,
    *,
    vision_heads: int = 16,
    text_heads: int = 16,
) -> Any:
    """A transformers ``CLIPModel`` (float32, eval) from an open_clip ViT checkpoint.

    Sizes come from the tensors' shapes; the head counts cannot, so they are arguments (ViT-H-14: 16 and 16,
    i.e. 80- and 64-wide heads). ``tokenizer`` supplies the special token ids (the text tower pools at the
    end-of-text token, which open_clip finds as the largest id).
    """
    transformers = require("transformers", "hpsv2", HPSV2_ID)
    state = checkpoint if isinstance(checkpoint, dict) else load_state_dict(checkpoint)
    converted = convert_open_clip_state_dict(state)

    def depth(prefix: str) -> int:
        return len({k.split(".")[3] for k in converted if k.startswith(prefix + "encoder.layers.")})

    patch = converted["vision_model.embeddings.patch_embedding.weight"]
    positions = converted["vision_model.embeddings.position_embedding.weight"].shape[0]
    tokens = converted["text_model.embeddings.token_embedding.weight"]
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=tokens.shape[0],
            hidden_size=tokens.shape[1],
            intermediate_size=converted["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            num_hidden_layers=depth("text_model."),
            num_attention_heads=text_heads,
            max_position_embeddings=converted["text_model.embeddings.position_embedding.weight"].shape[0],
            hidden_act="gelu",
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=patch.shape[0],
            intermediate_size=converted["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            num_hidden_layers=depth("vision_model."),
            num_attention_heads=vision_heads,
            image_size=patch.shape[-1] * math.isqrt(positions - 1),
            patch_size=patch.shape[-1],
            hidden_act="gelu",
            layer_norm_eps=1e-5,
        ),
        projection_dim=converted["text_projection.weight"].shape[0],
    )
    model = transformers.CLIPModel(config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(
            f"open_clip checkpoint does not fit a CLIPModel: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval()


def pad_to_square(images: np.ndarray, size: int) -> np.ndarray:
    """open_clip's ``ResizeMaxSize``: the longer side to ``size`` (bicubic), centred on a black square."""
    out = np.zeros((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
        top, left = (size - nh) // 2, (size - nw) // 2
        out[i, top : top + nh, left : left + nw] = resized
    return out


class _ClipReward(LearnedReward):
    """A ``CLIPModel`` and its processor (tokenizer + image processor) on the reward's device."""

    def __init__(self, model: Any, processor: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = self._place(model)
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor

    @classmethod
    def from_pretrained(
        cls, repo_or_path: str | os.PathLike | None = None, *, processor: str | os.PathLike | None = None, **kwargs: Any
    ) -> Any:
        """The ``CLIPModel`` and ``CLIPProcessor`` from the Hugging Face cache or saved folders.

        Args:
            repo_or_path: the model (default: the reward's ``model_id``).
            processor: the processor (default: the model folder's if it has one, else the reward's processor id,
                else the model's).
            **kwargs: ``device``, ``dtype``, ``batch_size`` and the reward's own options.

        Raises:
            FileNotFoundError: the model is not cached; the message says how to fetch it.
        """
        transformers = require("transformers", cls.name, cls.model_id)
        repo_or_path = repo_or_path or cls.model_id
        if processor is None:
            files = ("processor_config.json", "preprocessor_config.json")
            saved = any((Path(repo_or_path) / f).is_file() for f in files)
            processor = repo_or_path if saved else getattr(cls, "processor_id", None) or repo_or_path
        model = load_pretrained(cls.name, transformers.CLIPModel.from_pretrained, repo_or_path)
        return cls(model, load_pretrained(cls.name, transformers.CLIPProcessor.from_pretrained, processor), **kwargs)

    def _embeddings(self, images: np.ndarray, queries: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = pixel_values(self.image_processor, images, self.device, self.dtype)
        return clip_embeddings(self.model, self.tokenizer, pixels, queries)


class PickScore(_ClipReward):
    """PickScore (Kirstain et al., 2023): a CLIP-H fine-tuned on Pick-a-Pic preferences. The score is
    ``logit_scale.exp() * cos(image, query)`` (about 18..24 on typical generations; the model's scale is 100).

    Args:
        model: a ``CLIPModel`` (``yuvalkirstain/PickScore_v1``).
        processor: a ``CLIPProcessor`` (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, as upstream).
        **kwargs: ``device``, ``dtype``, ``batch_size`` (see :class:`~promptloop_env.rewards._learned.LearnedReward`).
    """

    name = "pickscore"
    model_id = PICKSCORE_ID
    processor_id = VIT_H_14_ID

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        image, text = self._embeddings(images, queries)
        return self.model.logit_scale.float().exp() * (image * text).sum(-1)


class CLIPScore(_ClipReward):
    """Per-sample CLIPScore (Hessel et al., 2021): ``w * max(cos(image, query), 0)``, in ``[0, w]``.

    Args:
        model: a ``CLIPModel`` (default ``openai/clip-vit-large-patch14``).
        processor: its ``CLIPProcessor``.
        w: the scale (2.5 in the paper; torchmetrics uses 100).
        prefix: text put before each query (the paper used ``"A photo depicts "``; default none).
        **kwargs: ``device``, ``dtype``, ``batch_size`` (see :class:`~promptloop_env.rewards._learned.LearnedReward`).
    """

    name = "clipscore"
    model_id = CLIPSCORE_ID

    def __init__(self, model: Any, processor: Any, *, w: float = 2.5, prefix: str = "", **kwargs: Any):
        super().__init__(model, processor, **kwargs)
        self.w = float(w)
        self.prefix = prefix

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        image, text = self._embeddings(images, [self.prefix + q for q in queries])
        return self.w * (image * text).sum(-1).clamp(min=0)


class HPSv2(LearnedReward):
    """Human Preference Score v2 / v2.1 (Wu et al., 2023): an open_clip ViT-H-14 fine-tuned on HPDv2. The score is
    ``cos(image, query)`` (about 0.2..0.35 on typical generations), images padded to a square as upstream.

    Args:
        model: a transformers ``CLIPModel`` (see :func:`load_open_clip_checkpoint`).
        tokenizer: the ViT-H-14 tokenizer (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; open_clip's, 77 tokens).
        **kwargs: ``device``, ``dtype``, ``batch_size`` (see :class:`~promptloop_env.rewards._learned.LearnedReward`).
    """

    name = "hpsv2"
    model_id = HPSV2_ID

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = self._place(model)
        self.tokenizer = tokenizer
        self.size = model.config.vision_config.image_size
        self.processor = clip_image_processor(self.size, do_resize=False, do_center_crop=False)

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike = HPSV2_ID,
        *,
        version: str = "v2.1",
        tokenizer: str | os.PathLike = VIT_H_14_ID,
        vision_heads: int = 16,
        text_heads: int = 16,
        **kwargs: Any,
    ) -> HPSv2:
        """Load an HPSv2 checkpoint (open_clip format) from the Hugging Face cache, a folder or a file.

        Args:
            repo_or_path: ``xswu/HPSv2``, a folder holding the checkpoint, or the checkpoint file itself.
            version: ``"v2.1"`` (``HPS_v2.1_compressed.pt``) or ``"v2.0"`` (``HPS_v2_compressed.pt``).
            tokenizer: the ViT-H-14 tokenizer (id or folder).
            vision_heads: attention heads of the image tower (ViT-H-14: 16).
            text_heads: attention heads of the text tower (ViT-H-14: 16).
            **kwargs: ``device``, ``dtype``, ``batch_size``.

        Raises:
            FileNotFoundError: the checkpoint is not cached; the message says how to fetch it.
        """
        if version not in HPSV2_FILES:
            raise ValueError(f"HPSv2 version must be one of {sorted(HPSV2_FILES)}; got {version!r}.")
        transformers = require("transformers", cls.name, HPSV2_ID)
        path = hub_file(cls.name, repo_or_path, HPSV2_FILES[version])
        tok = load_pretrained(cls.name, transformers.AutoTokenizer.from_pretrained, tokenizer)
        model = load_open_clip_checkpoint(path, tok, vision_heads=vision_heads, text_heads=text_heads)
        return cls(model, tok, **kwargs)

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        pixels = pixel_values(self.processor, pad_to_square(images, self.size), self.device, self.dtype)
        image, text = clip_embeddings(self.model, self.tokenizer, pixels, queries)
        return (image * text).sum(-1)


class AestheticScore(LearnedReward):
    """The LAION improved aesthetic predictor: a linear MLP on the L2-normalised CLIP ViT-L/14 image embedding,
    trained on SAC + LOGOS + AVA ratings (1..10 scale; typical generations score 4..7). Ignores the query.

    Args:
        clip: a ``CLIPModel`` or ``CLIPVisionModelWithProjection`` (``openai/clip-vit-large-patch14``).
        image_processor: its image processor.
        head: the :class:`~promptloop_env.rewards._learned.RatingHead` (``sac+logos+ava1-l14-linearMSE.pth``).
        **kwargs: ``device``, ``dtype``, ``batch_size`` (see :class:`~promptloop_env.rewards._learned.LearnedReward`).
    """

    name = "aesthetic"
    model_id = f"{AESTHETIC_ID} + {CLIP_L_14_ID}"

    def __init__(self, clip: Any, image_processor: Any, head: RatingHead, **kwargs: Any):
        super().__init__(**kwargs)
        self.clip = self._place(clip)
        self.head = self._place(head, torch.float32)
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike = AESTHETIC_ID,
        *,
        filename: str = AESTHETIC_FILE,
        clip: str | os.PathLike = CLIP_L_14_ID,
        **kwargs: Any,
    ) -> AestheticScore:
        """The MLP from the Hugging Face cache, a folder or a file (e.g. the original
        ``sac+logos+ava1-l14-linearMSE.pth``), and CLIP ViT-L/14's vision tower.

        Raises:
            FileNotFoundError: a model is not cached; the message says how to fetch it.
        """
        transformers = require("transformers", cls.name, CLIP_L_14_ID)
        head = load_rating_head(hub_file(cls.name, repo_or_path, filename))
        vision = load_pretrained(cls.name, transformers.CLIPVisionModelWithProjection.from_pretrained, clip)
        processor = load_pretrained(cls.name, transformers.CLIPImageProcessor.from_pretrained, clip)
        return cls(vision, processor, head, **kwargs)

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        pixels = pixel_values(self.image_processor, images, self.device, self.dtype)
        if hasattr(self.clip, "get_image_features"):
            embeds = features(self.clip.get_image_features(pixel_values=pixels))
        else:
            embeds = self.clip(pixel_values=pixels).image_embeds
        embeds = torch.nn.functional.normalize(embeds.float(), dim=-1)
        return self.head(embeds)


def load_rating_head(path: str | os.PathLike) -> RatingHead:
    """The aesthetic MLP from its checkpoint (keys ``layers.{0,2,4,6,7}.{weight,bias}``), float32, eval."""
    state = load_state_dict(path)
    if "layers.0.weight" not in state:
        raise KeyError(
            f"{str(path)!r} is not an aesthetic-predictor MLP (no 'layers.0.weight'); keys: {list(state)[:5]}."
        )
    head = RatingHead(state["layers.0.weight"].shape[1])
    head.load_state_dict(state)
    return head.eval()


register_reward("hpsv2")(lambda **options: HPSv2.from_pretrained(**options))
register_reward("pickscore")(lambda **options: PickScore.from_pretrained(**options))
register_reward("aesthetic")(lambda **options: AestheticScore.from_pretrained(**options))
register_reward("clipscore")(lambda **options: CLIPScore.from_pretrained(**options))
