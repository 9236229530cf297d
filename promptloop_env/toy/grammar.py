"""The shapes grammar: structured scenes of one or two coloured shapes, their captions, and a caption parser.

A :class:`Scene` is what gets rendered (every attribute known); a :class:`Spec` is what a caption states
(attributes left out of the caption are ``None``). :func:`caption` writes a random phrasing of a scene
(several word orders, optional articles, synonyms, optional commas, attributes dropped at random) and
:func:`parse` recovers the :class:`Spec` of any caption it can write. :func:`split_of` assigns every full
spec to a fixed ``"train"`` or ``"test"`` split (about 10 % test) for held-out evaluation.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "POSITIONS",
    "QUERY_STYLES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "Object",
    "ObjectSpec",
    "ParseError",
    "Scene",
    "Spec",
    "caption",
    "color_synonyms",
    "describe",
    "emphasise",
    "model_caption",
    "user_query",
    "parse",
    "random_scene",
    "restate",
    "sample_queries",
    "spec_of",
    "split_of",
    "vocabulary",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
#: Object colours: saturated, pairwise at least ~110 apart in RGB and at least ~140 from every background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 170, 20),
    "blue": (20, 50, 230),
    "yellow": (240, 240, 40),
    "orange": (255, 140, 0),
    "purple": (130, 0, 200),
    "pink": (255, 110, 200),
    "cyan": (0, 210, 230),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "brown": (90, 55, 25),
}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
#: A two-object scene's relation reads "objects[0] <relation> objects[1]".
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

_EXAMPLE = "a small red circle on the left on a white background"

# ---------------------------------------------------------------------------------------------------------
# Surface forms. The caption writer picks among them; the parser knows every one of them (and a few more
# combinations of the background phrase).
_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
}
_SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
#: Each colour's caption word first, then the one synonym users reach for (rare in the training captions).
_COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet"),
    "green": ("green", "lime"),
    "blue": ("blue", "navy"),
    "yellow": ("yellow", "golden"),
    "orange": ("orange", "amber"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "rose"),
    "cyan": ("cyan", "turquoise"),
}
_BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "white": ("white",),
    "black": ("black",),
    "gray": ("gray", "grey"),
    "brown": ("brown",),
}
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "to the left", "in the left part"),
    "right": ("on the right", "at the right", "to the right", "in the right part"),
    "top": ("at the top", "on the top", "in the top part"),
    "bottom": ("at the bottom", "on the bottom", "in the bottom part"),
    "center": ("in the center", "in the middle", "at the center", "in the centre"),
}
_RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
#: Background phrases the caption writer uses ("{}" is the background colour word).
_BACKGROUND_TEMPLATES: tuple[str, ...] = (
    "on a {} background",
    "on {} background",
    "{} background",
    "against a {} backdrop",
    "with a {} background",
    "on the {} backdrop",
)
# The parser accepts any combination of these around "<colour> background|backdrop".
_BG_CONNECTORS = ("on", "against", "with", "")
_BG_ARTICLES = ("a", "the", "")
_BG_NOUNS = ("background", "backdrop")
_ARTICLES = ("a", "an", "the")
_FILLERS = ("there", "is")


@dataclass(frozen=True)
class Object:
    """One shape of a scene: ``shape`` in SHAPES, ``color`` in COLORS, ``size`` in SIZES."""

    shape: str
    color: str
    size: str

    def __post_init__(self) -> None:
        _check_value("shape", self.shape, SHAPES)
        _check_value("color", self.color, tuple(COLORS))
        _check_value("size", self.size, SIZES)


@dataclass(frozen=True)
class Scene:
    """A fully specified scene: one object at a ``position``, or two objects in a ``relation``.

    Two objects read "objects[0] <relation> objects[1]" and must differ in colour.
    """

    objects: tuple[Object, ...]
    background: str
    position: str | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        objects = tuple(self.objects)
        object.__setattr__(self, "objects", objects)
        if not all(isinstance(o, Object) for o in objects):
            raise ValueError(f"Scene.objects must be Object instances, got {objects!r}.")
        _check_value("background", self.background, tuple(BACKGROUNDS))
        if len(objects) == 1:
            if self.position is None:
                raise ValueError("A one-object Scene needs a position (one of " + ", ".join(POSITIONS) + ").")
            _check_value("position", self.position, POSITIONS)
            if self.relation is not None:
                raise ValueError(f"A one-object Scene has no relation, got relation={self.relation!r}.")
        elif len(objects) == 2:
            if self.relation is None:
                raise ValueError("A two-object Scene needs a relation (one of " + ", ".join(RELATIONS) + ").")
            _check_value("relation", self.relation, RELATIONS)
            if self.position is not None:
                raise ValueError(
                    f"A two-object Scene has no position (got position={self.position!r}); "
                    "its layout is given by the relation."
                )
            if objects[0].color == objects[1].color:
                raise ValueError(f"The two objects of a Scene must differ in colour, both are {objects[0].color!r}.")
        else:
            raise ValueError(f"A Scene has one or two objects, got {len(objects)}.")


@dataclass(frozen=True)
class ObjectSpec:
    """What a caption states about one object (``None``: not stated)."""

    shape: str | None
    color: str | None
    size: str | None

    def __post_init__(self) -> None:
        _check_value("shape", self.shape, SHAPES, optional=True)
        _check_value("color", self.color, tuple(COLORS), optional=True)
        _check_value("size", self.size, SIZES, optional=True)


@dataclass(frozen=True)
class Spec:
    """What a caption states: one or two objects, and optionally background, position (one object only)
    and relation (two objects only, "objects[0] <relation> objects[1]")."""

    objects: tuple[ObjectSpec, ...]
    background: str | None = None
    position: str | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        objects = tuple(self.objects)
        object.__setattr__(self, "objects", objects)
        if not all(isinstance(o, ObjectSpec) for o in objects):
            raise ValueError(f"Spec.objects must be ObjectSpec instances, got {objects!r}.")
        if len(objects) not in (1, 2):
            raise ValueError(f"A Spec states one or two objects, got {len(objects)}.")
        _check_value("background", self.background, tuple(BACKGROUNDS), optional=True)
        _check_value("position", self.position, POSITIONS, optional=True)
        _check_value("relation", self.relation, RELATIONS, optional=True)
        if self.position is not None and len(objects) != 1:
            raise ValueError("A position can only be stated for a single object; use a relation for two.")
        if self.relation is not None and len(objects) != 2:
            raise ValueError("A relation needs exactly two objects.")

    def attributes(self) -> list[str]:
        """Names of the stated attributes, e.g. ``["color", "shape", "size", "position", "background",
        "count"]``; with two objects the per-object ones carry the object index (``"color_0"``,
        ``"shape_1"``) and ``"relation"`` may appear. ``"count"`` is always stated."""
        names: list[str] = []
        two = len(self.objects) == 2
        for i, obj in enumerate(self.objects):
            for name in ("color", "shape", "size"):
                if getattr(obj, name) is not None:
                    names.append(f"{name}_{i}" if two else name)
        if self.position is not None:
            names.append("position")
        if self.relation is not None:
            names.append("relation")
        if self.background is not None:
            names.append("background")
        names.append("count")
        return names


class ParseError(ValueError):
    """A caption outside the shapes grammar; the message names the words that could not be parsed."""


def _check_value(name: str, value: str | None, allowed: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}.")


def spec_of(scene: Scene) -> Spec:
    """The full :class:`Spec` of a scene (every attribute stated)."""
    return Spec(
        objects=tuple(ObjectSpec(shape=o.shape, color=o.color, size=o.size) for o in scene.objects),
        background=scene.background,
        position=scene.position,
        relation=scene.relation,
    )


def _pick(rng: np.random.Generator, options) -> str:
    options = tuple(options)
    return options[int(rng.integers(len(options)))]


def _random_object(rng: np.random.Generator, exclude_color: str | None = None) -> Object:
    colors = [c for c in COLORS if c != exclude_color]
    return Object(shape=_pick(rng, SHAPES), color=_pick(rng, colors), size=_pick(rng, SIZES))


def random_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """A uniformly random scene with ``num_objects`` objects (``None``: 1 or 2 with equal probability)."""
    if num_objects is None:
        num_objects = 1 + int(rng.integers(2))
    if num_objects not in (1, 2):
        raise ValueError(f"num_objects must be 1, 2 or None, got {num_objects!r}.")
    background = _pick(rng, BACKGROUNDS)
    first = _random_object(rng)
    if num_objects == 1:
        return Scene(objects=(first,), background=background, position=_pick(rng, POSITIONS))
    second = _random_object(rng, exclude_color=first.color)
    return Scene(objects=(first, second), background=background, relation=_pick(rng, RELATIONS))


# ---------------------------------------------------------------------------------------------------------
# Caption writer


def _noun_phrase(obj: Object, keep_size: bool, rng: np.random.Generator, plain_colors: bool = False) -> str:
    color = _COLOR_WORDS[obj.color][0] if plain_colors else _pick(rng, _COLOR_WORDS[obj.color])
    shape = _pick(rng, _SHAPE_WORDS[obj.shape])
    if keep_size:
        size = _pick(rng, _SIZE_WORDS[obj.size])
        form = int(rng.integers(3))
        if form == 0:
            words = f"{size} {color} {shape}"
        elif form == 1:
            words = f"{color} {size} {shape}"
        else:  # postposed size: "red circle, small"
            words = f"{color} {shape}{_comma(rng)} {size}"
    else:
        words = f"{color} {shape}"
    if rng.random() < 0.5:
        words = ("an " if words[0] in "aeiou" else "a ") + words
    return words


def _comma(rng: np.random.Generator) -> str:
    return "," if rng.random() < 0.5 else ""


def _join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def caption(scene: Scene, rng: np.random.Generator, drop: float = 0.0, plain_colors: bool = False) -> str:
    """A random lowercase phrasing of ``scene``.

    The word order (one of four templates per number of objects), articles, synonyms and commas are random.
    ``drop`` is the probability that each optional attribute (each object's size, the position, the
    relation, the background) is left out; a dropped relation joins the two objects with "and". Colour and
    shape of each object are always stated; ``plain_colors``: each colour by its caption word only ("red",
    never :func:`color_synonyms` such as "scarlet").
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"caption() takes a Scene, got {type(scene).__name__}.")
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"drop must be in [0, 1], got {drop!r}.")
    keep_sizes = [rng.random() >= drop for _ in scene.objects]
    keep_place = rng.random() >= drop  # the position (one object) or the relation (two objects)
    keep_bg = rng.random() >= drop
    nps = [_noun_phrase(o, k, rng, plain_colors) for o, k in zip(scene.objects, keep_sizes, strict=True)]
    bg = _pick(rng, _BACKGROUND_TEMPLATES).format(_pick(rng, _BACKGROUND_WORDS[scene.background])) if keep_bg else None
    template = int(rng.integers(4))
    if len(scene.objects) == 1:
        pos = _pick(rng, _POSITION_PHRASES[scene.position]) if keep_place else None
        np0 = nps[0]
        if template == 0:  # "a small red circle on the left on a white background"
            text = _join(np0 + (_comma(rng) if pos or bg else ""), pos and pos + (_comma(rng) if bg else ""), bg)
        elif template == 1:  # "on a white background, a red circle, small, at the left"
            text = _join(bg and bg + _comma(rng), np0 + (_comma(rng) if pos else ""), pos)
        elif template == 2:  # "on the left, a small red circle on a white background"
            text = _join(pos and pos + _comma(rng), np0 + (_comma(rng) if bg else ""), bg)
        else:  # "there is a red small circle against a white backdrop in the middle"
            text = _join("there is" if rng.random() < 0.5 else None, np0, (bg and bg + _comma(rng)) if pos else bg, pos)
    else:
        rel = _pick(rng, _RELATION_PHRASES[scene.relation]) if keep_place else "and"
        if template == 0:  # "a red circle to the left of a blue square on a white background"
            text = _join(nps[0], rel, nps[1] + (_comma(rng) if bg else ""), bg)
        elif template == 1:  # "on a white background, a red circle above a blue square"
            text = _join(bg and bg + _comma(rng), nps[0], rel, nps[1])
        elif template == 2:  # "there is a red circle below a blue square, white background"
            text = _join("there is", nps[0], rel, nps[1] + (_comma(rng) if bg else ""), bg)
        else:  # "a red circle is left of a blue square against a white backdrop"
            text = _join(nps[0] + (" is" if keep_place else ""), rel, nps[1] + (_comma(rng) if bg else ""), bg)
    return text.lower()


def _dropped(spec: Spec, rng: np.random.Generator, drop: float) -> Spec:
    """``spec`` with each object's size and the background left out at rate ``drop`` (position, relation,
    colours and shapes are always kept)."""
    if drop <= 0.0:
        return spec
    objects = tuple(
        ObjectSpec(shape=o.shape, color=o.color, size=None if rng.random() < drop else o.size) for o in spec.objects
    )
    background = None if rng.random() < drop else spec.background
    return Spec(objects=objects, background=background, position=spec.position, relation=spec.relation)


def model_caption(
    scene: Scene,
    rng: np.random.Generator,
    dialect_rate: float = 0.08,
    drop: float = 0.1,
    restated: int | None = None,
    salient_form: str = "restate",
    plain_colors: bool = False,
) -> str:
    """A training caption of the toy model: its own dialect.

    With probability ``1 - dialect_rate`` the canonical caption (:func:`describe`) of the scene with sizes and
    background left out at rate ``drop``; otherwise a random phrasing (:func:`caption`, every word order and
    synonym). The model therefore answers best to captions written like :func:`describe`, and only weakly to
    the synonyms and word orders users write (:func:`user_query`), as text-to-image models answer best to
    prompts written like their training captions. ``restated``: the index of the object a two-object caption
    makes salient, in the canonical form: named again at the end (``salient_form="restate"``, :func:`restate`)
    or its colour word doubled (``"emphasis"``, :func:`emphasise`). ``plain_colors``: the random phrasings too
    name colours by their caption words only, so the colour words users reach for (:func:`color_synonyms`)
    never occur (toy world v5).
    """
    if not 0.0 <= dialect_rate <= 1.0:
        raise ValueError(f"dialect_rate must be in [0, 1], got {dialect_rate!r}.")
    if salient_form not in ("restate", "emphasis"):
        raise ValueError(f"salient_form must be 'restate' or 'emphasis', got {salient_form!r}.")
    if restated is not None:
        spec = _dropped(spec_of(scene), rng, drop)
        return emphasise(spec, restated) if salient_form == "emphasis" else restate(spec, restated)
    if rng.random() < dialect_rate:
        return caption(scene, rng, drop=drop, plain_colors=plain_colors)
    return describe(_dropped(spec_of(scene), rng, drop))


def color_synonyms() -> list[str]:
    """The colour words users reach for that are not a colour's caption word ("scarlet" for red, ...)."""
    return [word for forms in _COLOR_WORDS.values() for word in forms[1:]]


def _rare(rng: np.random.Generator, forms: tuple[str, ...], p_rare: float) -> str:
    """The first (caption) form with probability ``1 - p_rare``, else one of the others."""
    if len(forms) == 1 or rng.random() >= p_rare:
        return forms[0]
    return _pick(rng, forms[1:])


def user_query(scene: Scene, rng: np.random.Generator, drop: float = 0.2, p_rare: float = 0.6) -> str:
    """A query as a user writes it: unlike the model's captions.

    Each word takes one of its rarer synonyms with probability ``p_rare`` ("violet", "disk", "tiny",
    "beneath", "grey backdrop"); the word order is one the captions rarely use (background or place first,
    "there is ..."); an object's size and the background are left out at rate ``drop``. The scorer parses
    every such query; the model, trained on :func:`model_caption`, follows them less well.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"user_query() takes a Scene, got {type(scene).__name__}.")

    def noun(obj: Object) -> str:
        color = _rare(rng, _COLOR_WORDS[obj.color], p_rare)
        shape = _rare(rng, _SHAPE_WORDS[obj.shape], p_rare)
        if rng.random() < drop:
            words = f"{color} {shape}"
        else:
            size = _rare(rng, _SIZE_WORDS[obj.size], p_rare)
            words = f"{color} {shape}, {size}" if rng.random() < 0.5 else f"{size} {color} {shape}"
        return ("an " if words[0] in "aeiou" else "a ") + words

    nps = [noun(o) for o in scene.objects]
    bg = None
    if rng.random() >= drop:
        word = _rare(rng, _BACKGROUND_WORDS[scene.background], p_rare)
        bg = _pick(rng, (f"{word} backdrop", f"against a {word} backdrop", f"{word} background"))
    form = int(rng.integers(3))
    if len(scene.objects) == 1:
        place = _rare(rng, _POSITION_PHRASES[scene.position], p_rare)
        if form == 0:  # "grey backdrop, in the middle a tiny violet disk"
            text = _join(bg and bg + ",", place, nps[0])
        elif form == 1:  # "there is a violet disk, tiny, in the middle, grey backdrop"
            text = _join("there is", nps[0] + ",", place + ("," if bg else ""), bg)
        else:  # "in the middle: a tiny violet disk against a grey backdrop"
            text = _join(place, nps[0], bg)
    else:
        rel = _rare(rng, _RELATION_PHRASES[scene.relation], p_rare)
        if form == 0:  # "grey backdrop, a violet disk beneath a lime box"
            text = _join(bg and bg + ",", nps[0], rel, nps[1])
        elif form == 1:  # "there is a violet disk beneath a lime box, grey backdrop"
            text = _join("there is", nps[0], rel, nps[1] + ("," if bg else ""), bg)
        else:
            text = _join(nps[0], "is", rel, nps[1], bg)
    return text.lower()


def describe(spec: Spec) -> str:
    """The canonical caption of a spec: every stated attribute, in the first surface form of each word, in
    the order "size colour shape, position or relation, background" (e.g. "a small red circle on the left
    on a white background"). ``parse(describe(spec)) == spec``; the toy policy learns to write it."""
    if not isinstance(spec, Spec):
        raise TypeError(f"describe() takes a Spec, got {type(spec).__name__}.")
    return _describe(spec)


def _describe(spec: Spec, emphasis: int | None = None) -> str:
    """:func:`describe`, with the colour word of object ``emphasis`` doubled (:func:`emphasise`)."""

    def noun(obj: ObjectSpec, emphasised: bool) -> str:
        color = obj.color and (f"{obj.color} {obj.color}" if emphasised else obj.color)
        words = [_SIZE_WORDS[obj.size][0] if obj.size else None, color, obj.shape and _SHAPE_WORDS[obj.shape][0]]
        text = _join(*words)
        return ("an " if text[0] in "aeiou" else "a ") + text

    parts = [noun(spec.objects[0], emphasis == 0)]
    if len(spec.objects) == 2:
        parts += [_RELATION_PHRASES[spec.relation][0] if spec.relation else "and", noun(spec.objects[1], emphasis == 1)]
    elif spec.position:
        parts.append(_POSITION_PHRASES[spec.position][0])
    if spec.background:
        parts.append(_BACKGROUND_TEMPLATES[0].format(_BACKGROUND_WORDS[spec.background][0]))
    return _join(*parts)


def restate(spec: Spec, index: int) -> str:
    """The canonical caption of a two-object ``spec`` with object ``index`` named again at the end
    (``"a small red circle to the left of a blue square, a blue square"``): the toy model's way to make an
    object salient. In its training data the restated object is always drawn as stated and the other object
    carries the pair's whole risk of neglect or colour leakage, as emphasising one word of a prompt strengthens
    that object at the others' expense on real models. The toy world v3 attempt trained a model on such captions;
    it learned only part of that lever (``benchmarks/results/toy_world_v3.md``)."""
    if not isinstance(spec, Spec):
        raise TypeError(f"restate() takes a Spec, got {type(spec).__name__}.")
    if len(spec.objects) != 2 or index not in (0, 1):
        raise ValueError(
            f"restate() names one object of a two-object spec again: index must be 0 or 1 and the spec must have "
            f"two objects; got index {index!r} for {len(spec.objects)} object(s)."
        )
    obj = spec.objects[index]
    noun = _join(obj.color, obj.shape and _SHAPE_WORDS[obj.shape][0])
    return f"{describe(spec)}, {'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def emphasise(spec: Spec, index: int) -> str:
    """The canonical caption of a two-object ``spec`` with object ``index``'s colour word doubled in place
    (``"a small red red circle to the left of a blue square"``): emphasis in the object's own slot, as prompt
    weighting strengthens one phrase of a prompt on real models. Trained with ``--salient-form emphasis``
    (:mod:`promptloop_env.toy.train`), the emphasised object is always drawn as stated and the other object
    carries the pair's risk of neglect or colour leakage. ``parse(emphasise(spec, i)) == spec``."""
    if not isinstance(spec, Spec):
        raise TypeError(f"emphasise() takes a Spec, got {type(spec).__name__}.")
    if len(spec.objects) != 2 or index not in (0, 1) or spec.objects[index].color is None:
        raise ValueError(
            "emphasise() doubles the colour word of one object of a two-object spec: index must be 0 or 1, the "
            f"spec must have two objects and that object a colour; got index {index!r} for "
            f"{len(spec.objects)} object(s)."
        )
    return _describe(spec, emphasis=index)


# ---------------------------------------------------------------------------------------------------------
# Parser


def _phrase_table() -> dict[tuple[str, ...], tuple[str, str | None]]:
    """Every recognised phrase (as a word tuple) -> (kind, canonical value)."""
    table: dict[tuple[str, ...], tuple[str, str | None]] = {}
    for kind, forms in (("size", _SIZE_WORDS), ("color", _COLOR_WORDS), ("shape", _SHAPE_WORDS)):
        for value, words in forms.items():
            for word in words:
                table[(word,)] = (kind, value)
    for kind, forms in (("position", _POSITION_PHRASES), ("relation", _RELATION_PHRASES)):
        for value, phrases in forms.items():
            for phrase in phrases:
                table[tuple(phrase.split())] = (kind, value)
    for value, words in _BACKGROUND_WORDS.items():
        for word in words:
            for connector in _BG_CONNECTORS:
                for article in _BG_ARTICLES:
                    for noun in _BG_NOUNS:
                        table[tuple(w for w in (connector, article, word, noun) if w)] = ("background", value)
    table[("and",)] = ("and", None)
    for word in _ARTICLES + _FILLERS:
        table[(word,)] = ("filler", None)
    return table


_PHRASES = _phrase_table()
_MAX_PHRASE = max(len(k) for k in _PHRASES)
_VOCABULARY = sorted({w for k in _PHRASES for w in k})
_VOCABULARY_SET = frozenset(_VOCABULARY)
_WORD_RE = re.compile(r"[a-z0-9]+")


def vocabulary() -> list[str]:
    """Every word a caption of the grammar can contain (sorted), e.g. for building a tokenizer."""
    return list(_VOCABULARY)


def _error(text: str, problem: str) -> ParseError:
    return ParseError(
        f"Cannot parse {text!r}: {problem}; expected a caption of the shapes grammar such as {_EXAMPLE!r}."
    )


def _restates(obj: dict[str, str | None], objects: list[dict[str, str | None]]) -> bool:
    """Whether a third mention names one of the first two objects again: its colour and shape, no other size."""
    return obj["color"] is not None and any(
        o["color"] == obj["color"] and o["shape"] == obj["shape"] and obj["size"] in (None, o["size"]) for o in objects
    )


def parse(caption: str) -> Spec:
    """The :class:`Spec` a caption states (case and punctuation are ignored, synonyms canonicalised).

    A third object with the colour and shape of one of the first two (and no other size) names that object
    again (:func:`restate`) and adds nothing: ``parse(restate(spec, i)) == spec``.

    Raises:
        ParseError: naming the unknown words, or the structural problem (no object, more than two objects,
            a position stated for two objects, a colour or size without a shape, ...).
    """
    if not isinstance(caption, str):
        raise ParseError(f"Cannot parse {caption!r}: a caption must be a string, got {type(caption).__name__}.")
    words = _WORD_RE.findall(caption.lower())
    if not words:
        raise _error(caption, "it contains no words")
    unknown = [w for w in words if w not in _VOCABULARY_SET]
    if unknown:
        raise _error(caption, f"unknown words {unknown}")
    # Longest-match tokenisation into (kind, value) items.
    items: list[tuple[str, str | None, str]] = []
    unexpected: list[str] = []
    i = 0
    while i < len(words):
        for length in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            key = tuple(words[i : i + length])
            if key in _PHRASES:
                kind, value = _PHRASES[key]
                if kind != "filler":
                    items.append((kind, value, " ".join(key)))
                i += length
                break
        else:
            unexpected.append(words[i])
            i += 1
    if unexpected:
        raise _error(caption, f"unexpected words {unexpected} (known words, but not in a phrase of the grammar)")

    objects: list[dict[str, str | None]] = []
    pending: dict[str, str | None] = {}
    separators: list[tuple[str | None, int]] = []  # (relation or None for "and", number of objects before)
    positions: list[str | None] = []
    backgrounds: list[str | None] = []
    previous = None
    for kind, value, surface in items:
        if kind == "size" and previous == "shape" and not pending:  # postposed: "a red circle, small"
            if objects[-1]["size"] is not None:
                raise _error(caption, f"two sizes for one object ({surface!r})")
            objects[-1]["size"] = value
            kind = "postsize"
        elif kind in ("size", "color"):
            if kind == "color" and previous == "color" and pending.get("color") == value:
                continue  # the colour word doubled in place: emphasis (see emphasise())
            if kind in pending:
                raise _error(caption, f"two {kind}s for one object ({surface!r})")
            pending[kind] = value
        elif kind == "shape":
            objects.append({"shape": value, "color": pending.get("color"), "size": pending.get("size")})
            pending = {}
        else:
            if pending:
                raise _error(caption, f"{' '.join(str(v) for v in pending.values())!r} is not followed by a shape")
            if kind in ("relation", "and"):
                separators.append((value, len(objects)))
            elif kind == "position":
                positions.append(value)
            elif kind == "background":
                backgrounds.append(value)
        previous = kind
    if pending:
        raise _error(caption, f"{' '.join(str(v) for v in pending.values())!r} is not followed by a shape")
    if not objects:
        raise _error(caption, "no object (a colour and a shape such as 'red circle')")
    if len(objects) == 3 and _restates(objects[2], objects[:2]) and all(n <= 2 for _, n in separators):
        objects.pop()  # a restated object ("..., a blue square", see restate()) is the same object again
    if len(objects) > 2:
        raise _error(caption, f"{len(objects)} objects; the grammar has one or two")
    if len(backgrounds) > 1:
        raise _error(caption, f"{len(backgrounds)} backgrounds")
    if len(positions) > 1:
        raise _error(caption, f"{len(positions)} positions")
    relation = None
    if len(objects) == 1:
        if separators:
            raise _error(caption, "a relation or 'and' with a single object")
    else:
        if positions:
            raise _error(caption, "a position with two objects (use a relation such as 'left of')")
        if len(separators) != 1 or separators[0][1] != 1:
            raise _error(caption, "two objects must be joined by one relation (e.g. 'left of') or 'and'")
        relation = separators[0][0]
    return Spec(
        objects=tuple(ObjectSpec(**o) for o in objects),
        background=backgrounds[0] if backgrounds else None,
        position=positions[0] if positions else None,
        relation=relation,
    )


# ---------------------------------------------------------------------------------------------------------
# Splits and query sampling

_TEST_PERCENT = 10


def _canonical(spec: Spec) -> str:
    objects = ";".join(f"{o.size}/{o.color}/{o.shape}" for o in spec.objects)
    return f"objects={objects}|position={spec.position}|relation={spec.relation}|background={spec.background}"


def split_of(spec: Spec) -> str:
    """``"train"`` or ``"test"`` (about 10 %) for a spec: a fixed hash (CRC-32) of its canonical string, the
    same in every process. Meant for full specs (:func:`spec_of` of a scene)."""
    if not isinstance(spec, Spec):
        raise TypeError(f"split_of() takes a Spec, got {type(spec).__name__}.")
    return "test" if zlib.crc32(_canonical(spec).encode("utf-8")) % 100 < _TEST_PERCENT else "train"


#: Query styles of :func:`sample_queries`: random phrasings, the model's own captions, users' queries.
QUERY_STYLES = ("caption", "model", "user")


def sample_queries(
    n: int,
    split: str,
    seed: int,
    drop: float = 0.3,
    num_objects: int | None = None,
    style: str = "caption",
) -> list[str]:
    """``n`` queries of random scenes whose full spec falls in ``split`` (``"train"`` or ``"test"``); the same
    list for the same arguments.

    ``style``: ``"caption"`` (a random phrasing, :func:`caption`, attributes dropped at rate ``drop``),
    ``"model"`` (the model's own dialect, :func:`describe` of the full spec, ``drop`` ignored) or ``"user"``
    (:func:`user_query`, sizes and background dropped at rate ``drop``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if style not in QUERY_STYLES:
        raise ValueError(f"style must be one of {', '.join(QUERY_STYLES)}; got {style!r}.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    rng = np.random.default_rng(seed)
    queries: list[str] = []
    while len(queries) < n:
        scene = random_scene(rng, num_objects)
        if split_of(spec_of(scene)) == split:
            if style == "caption":
                queries.append(caption(scene, rng, drop=drop))
            elif style == "model":
                queries.append(describe(spec_of(scene)))
            else:
                queries.append(user_query(scene, rng, drop=drop))
    return queries
