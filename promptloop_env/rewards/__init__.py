"""Rewards: ``reward(images: uint8 [N, H, W, 3], queries: list[str]) -> float [N]``, by name or as callables.

A reward never sees latents or backends, only final images and the ORIGINAL queries. Any plain callable of
that shape is accepted; :func:`make_reward` also takes a registered name, or a ``{name: weight}`` mapping
(a :class:`WeightedSum` whose components are reported separately in the env's ``info``).

Learned rewards (``imagereward``, ``hpsv2``, ``pickscore``, ``aesthetic``, ``clipscore``) are registered here
but load their model only when built; ``transformers`` is imported then, not at ``import promptloop_env``.
"""

from .base import Reward, RewardFn, WeightedSum, as_reward, make_reward, register_reward, reward_names
from .clip import AestheticScore, CLIPScore, HPSv2, PickScore
from .imagereward import ImageReward
from .jpeg import jpeg_compressibility, jpeg_incompressibility
from .toy import toy_alignment, toy_all_correct

__all__ = [
    "AestheticScore",
    "CLIPScore",
    "HPSv2",
    "ImageReward",
    "PickScore",
    "Reward",
    "RewardFn",
    "WeightedSum",
    "as_reward",
    "jpeg_compressibility",
    "jpeg_incompressibility",
    "make_reward",
    "register_reward",
    "reward_names",
    "toy_alignment",
    "toy_all_correct",
]
