"""The embedded toy world: a procedural "shapes" domain in which prompts matter.

- :mod:`.grammar`: structured scenes <-> captions (several phrasings per scene), ``parse``, train/test splits;
- :mod:`.renderer`: scene -> 32 x 32 RGB image, deterministic (the model's training data);
- :mod:`.scorer`: (image, query) -> per-attribute verdicts by colour segmentation and geometry, no weights;
- :mod:`.model`: the small text-to-image ``StableDiffusionPipeline`` trained on it (shipped, safetensors);
- :mod:`.train`: the seeded script that trained it (``python -m promptloop_env.toy.train``).

``gym.make("PromptLoop-v0")`` runs this world by default: the toy model, queries from the grammar's train
split, and the ``toy_alignment`` reward.
"""

from .grammar import ParseError, Scene, Spec, caption, describe, parse, random_scene, sample_queries, spec_of, split_of
from .renderer import render
from .scorer import Verdict, accuracy, score

__all__ = [
    "ParseError",
    "Scene",
    "Spec",
    "Verdict",
    "accuracy",
    "caption",
    "describe",
    "parse",
    "random_scene",
    "render",
    "sample_queries",
    "score",
    "spec_of",
    "split_of",
]
