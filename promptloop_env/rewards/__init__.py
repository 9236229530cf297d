"""Rewards: ``reward(images: uint8 [N, H, W, 3], queries: list[str]) -> float [N]``, by name or as callables.

A reward never sees latents or backends, only final images and the ORIGINAL queries. Any plain callable of
that shape is accepted; :func:`make_reward` also takes a registered name, or a ``{name: weight}`` mapping
(a :class:`WeightedSum` whose components are reported separately in the env's ``info``).
"""

from .base import Reward, RewardFn, WeightedSum, as_reward, make_reward, register_reward, reward_names
from .jpeg import jpeg_compressibility, jpeg_incompressibility
from .toy import toy_alignment, toy_all_correct

__all__ = [
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
