"""Adapters for RL libraries that cannot take text (Stable-Baselines3, RLlib): numeric actions and observations.

``PromptLoop-v0`` acts and observes in text (``Text`` spaces), which Stable-Baselines3 and RLlib do not
support. These Gymnasium wrappers turn it into an ordinary numeric task:

- :class:`PromptBankAction`: ``Discrete(n)``: choose one of ``n`` prompt templates (``{query}`` in an entry is
  the query, ``{prompt}`` the prompt in force); :data:`DEFAULT_BANK` holds modifiers appended to the query,
  entry 0 being the query unchanged (the identity baseline);
- :class:`TokenAction`: ``MultiDiscrete([V + 1] * L)``: ``L`` word slots over a vocabulary of ``V`` words plus
  the empty word, decoded to text and appended to the query (or used as the whole prompt);
- :class:`NumericObservation`: the preview as a channel-first ``uint8`` image (optionally resized), progress as a
  ``Box``, and the query and prompt as bags of words or word ids over a vocabulary (or dropped), in a ``Dict``
  for SB3's ``MultiInputPolicy`` (or the preview alone, a ``Box`` for ``CnnPolicy``).

```python
>>> import gymnasium as gym
>>> import promptloop_env
>>> from promptloop_env.wrappers import NumericObservation, PromptBankAction
>>> env = NumericObservation(PromptBankAction(gym.make("PromptLoop-v0", num_inference_steps=6, num_refinements=1)))
>>> env.action_space, env.observation_space["preview"].shape
(Discrete(8), (3, 32, 32))
>>> obs, info = env.reset(seed=0)
>>> obs, reward, terminated, truncated, info = env.step(1)
>>> terminated, info["prompts"][0] == info["query"] + ", on a black background"
(True, True)

```

The wrappers read the query and the prompt in force from the base env (``env.unwrapped``), so they stack in any
order with each other and with Gymnasium's standard wrappers (``TimeLimit``, ``RecordEpisodeStatistics``,
``RecordVideo``). Each wrapper's work is done by a codec that needs no env, and that
:class:`promptloop_env.sb3.PromptLoopSB3VecEnv` (the batched alternative, one denoiser call per step) shares:
:class:`PromptBankCodec`, :class:`TokenCodec` (action -> prompt) and :class:`ObservationCodec` (the env's
observation -> numbers). With SB3, ``make_vec_env(make_sb3_env, n_envs=...)`` builds a ``DummyVecEnv`` of the
wrapped envs; :func:`~promptloop_env.sb3.make_sb3_env` lives in :mod:`promptloop_env.sb3` (it is still importable
from here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

__all__ = [
    "DEFAULT_BANK",
    "OBSERVATION_KEYS",
    "NumericObservation",
    "ObservationCodec",
    "PromptBankAction",
    "PromptBankCodec",
    "TokenAction",
    "TokenCodec",
    "default_vocabulary",
    "tokenize",
]

#: The default prompt bank: the query unchanged (entry 0, the identity baseline), then background, size and position
#: modifiers appended to it. The shipped toy model barely follows appended modifiers (its JPEG sizes move by less
#: than 0.006 kB): ``benchmarks/results/sb3_bank_effects.md`` measures each entry's effect on the rewards.
DEFAULT_BANK: tuple[str, ...] = (
    "{query}",
    "{query}, on a black background",
    "{query}, on a white background",
    "{query}, on a gray background",
    "{query}, on a brown background",
    "{query}, small",
    "{query}, large",
    "{query}, in the center",
)

_WORD_RE = re.compile(r"[a-z0-9]+")

#: Upper bound of a word count in a bag of words: a 1024-character prompt has at most 512 words.
_MAX_WORDS = 512


def tokenize(text: str) -> list[str]:
    """Lowercase words (runs of ``a-z0-9``) of ``text``: punctuation and spacing are ignored."""
    return _WORD_RE.findall(text.lower())


def default_vocabulary() -> list[str]:
    """The toy grammar's words (sorted): every word a toy query can contain."""
    from .toy.grammar import vocabulary

    return vocabulary()


def _vocabulary(words: Sequence[str] | None) -> list[str]:
    if words is None:
        return default_vocabulary()
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise TypeError(f"vocabulary must be a sequence of str words; got {words!r:.80}.")
    words = list(words)
    if not words:
        raise ValueError("vocabulary is empty; expected at least one word.")
    if len(set(words)) != len(words):
        duplicates = sorted({w for w in words if words.count(w) > 1})
        raise ValueError(f"vocabulary has duplicate words {duplicates}; expected each word once.")
    return words


def _base_env(env: gym.Env) -> Any:
    from .env import PromptLoopEnv

    base = env.unwrapped
    if not isinstance(base, PromptLoopEnv):
        raise TypeError(
            f"These wrappers adapt a PromptLoopEnv (gym.make('PromptLoop-v0', ...)); got {type(base).__name__}."
        )
    return base


def _current_texts(env: gym.Env) -> tuple[str, str]:
    """The query and the prompt in force of the base env's episode."""
    engine = _base_env(env).engine
    if not engine.queries:
        return "", ""
    return engine.queries[0], engine.prompts[0]


def _fill(template: str, query: str, prompt: str) -> str:
    return template.replace("{query}", query).replace("{prompt}", prompt)


class PromptBankCodec:
    """Prompt-bank actions without an env: ``Discrete(len(bank))``, action ``i`` -> ``bank[i]`` filled in.

    Used by :class:`PromptBankAction` and by :class:`~promptloop_env.sb3.PromptLoopSB3VecEnv`, and usable alone
    (e.g. to show a policy's choices as text):

    ```python
    >>> codec = PromptBankCodec(["{query}", "{query}, small", "{prompt}!"])
    >>> codec.space, codec.prompt(1, query="a red circle", prompt="a red circle")
    (Discrete(3), 'a red circle, small')

    ```

    Args:
        bank: the prompt templates (default :data:`DEFAULT_BANK`); ``{query}`` in an entry is replaced by the
            query and ``{prompt}`` by the prompt in force.

    Attributes:
        bank: the templates, as a list.
        space: the action space, ``Discrete(len(bank))``.

    Raises:
        ValueError: for an empty bank or a non-str entry.
    """

    def __init__(self, bank: Sequence[str] | None = None) -> None:
        bank = DEFAULT_BANK if bank is None else bank
        if isinstance(bank, str) or not bank or not all(isinstance(b, str) for b in bank):
            raise ValueError(f"bank must be a non-empty sequence of str prompt templates; got {bank!r:.80}.")
        self.bank: list[str] = list(bank)
        self.space = spaces.Discrete(len(self.bank))

    def prompt(self, action: Any, query: str, prompt: str) -> str:
        """The prompt that ``action`` sends, given the episode's ``query`` and the ``prompt`` in force.

        Raises:
            ValueError: for an action that is not one integer in ``[0, len(bank))``.
        """
        index = np.asarray(action)
        if index.shape not in ((), (1,)) or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"A prompt-bank action is one integer in [0, {len(self.bank)}); got {action!r:.80}.")
        i = int(index.reshape(()))
        if not 0 <= i < len(self.bank):
            raise ValueError(f"Prompt-bank action {i} is out of range; expected an integer in [0, {len(self.bank)}).")
        return _fill(self.bank[i], query, prompt)


class TokenCodec:
    """Token actions without an env: ``MultiDiscrete([V + 1] * length)``, word slots -> words -> prompt.

    Slot value 0 is the empty word and ``i > 0`` is ``vocabulary[i - 1]``. Used by :class:`TokenAction` and by
    :class:`~promptloop_env.sb3.PromptLoopSB3VecEnv`:

    ```python
    >>> codec = TokenCodec(["big", "red"], length=3)
    >>> codec.decode([2, 0, 1]), codec.prompt([2, 0, 1], query="a circle", prompt="a circle")
    ('red big', 'a circle red big')

    ```

    Args:
        vocabulary: the words (default: the toy grammar's, :func:`default_vocabulary`).
        length: ``L``, the number of word slots.
        mode: ``"append"`` (the words follow the query) or ``"replace"`` (the words are the whole prompt).

    Attributes:
        vocabulary: the words, as a list.
        length: the number of word slots.
        mode: ``"append"`` or ``"replace"``.
        space: the action space, ``MultiDiscrete([V + 1] * length)``.

    Raises:
        ValueError: for a bad ``length``, ``mode`` or vocabulary (empty, duplicate words).
        TypeError: for a vocabulary that is not a sequence of str.
    """

    def __init__(self, vocabulary: Sequence[str] | None = None, length: int = 4, mode: str = "append") -> None:
        if mode not in ("append", "replace"):
            raise ValueError(f"mode must be 'append' or 'replace'; got {mode!r}.")
        if int(length) < 1:
            raise ValueError(f"length must be at least 1 word slot; got {length}.")
        self.vocabulary = _vocabulary(vocabulary)
        self.length = int(length)
        self.mode = mode
        self.space = spaces.MultiDiscrete(np.full(self.length, len(self.vocabulary) + 1, dtype=np.int64))

    def decode(self, action: Any) -> str:
        """The words of ``action`` joined by spaces (empty slots skipped).

        Raises:
            ValueError: for an action that is not ``length`` integers in ``[0, V]``.
        """
        ids = np.asarray(action)
        if ids.shape != (self.length,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"A token action is {self.length} integers in [0, {len(self.vocabulary)}]; got {action!r:.80}."
            )
        if ids.min() < 0 or ids.max() > len(self.vocabulary):
            raise ValueError(
                f"Token ids {ids.tolist()} out of range; expected integers in [0, {len(self.vocabulary)}]."
            )
        return " ".join(self.vocabulary[i - 1] for i in ids.tolist() if i > 0)

    def prompt(self, action: Any, query: str, prompt: str) -> str:
        """The prompt that ``action`` sends: ``query`` plus the decoded words, or the words alone (``"replace"``).
        ``prompt`` (the prompt in force) is unused; it is there so that every action codec is called alike."""
        words = self.decode(action)
        if self.mode == "replace":
            return words
        return f"{query} {words}" if words else query


class PromptBankAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """``Discrete(len(bank))`` actions: action ``i`` sends ``bank[i]`` as the new prompt, with ``{query}``
    replaced by the episode's query and ``{prompt}`` by the prompt in force (an entry without either is a
    fixed prompt).

    Args:
        env: a ``PromptLoop-v0`` env (possibly wrapped).
        bank: the prompt templates (default :data:`DEFAULT_BANK`, whose entry 0 leaves the query unchanged).

    Raises:
        ValueError: for an empty bank or a non-str entry. ``step`` raises ``ValueError`` for an action that is
            not an integer in ``[0, len(bank))``.
    """

    def __init__(self, env: gym.Env, bank: Sequence[str] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, bank=bank)
        gym.ActionWrapper.__init__(self, env)
        _base_env(env)
        self._codec = PromptBankCodec(bank)
        self.bank = self._codec.bank
        self.action_space = self._codec.space

    def action(self, action: Any) -> str:
        """The prompt of bank entry ``action`` for the current episode."""
        return self._codec.prompt(action, *_current_texts(self.env))


class TokenAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """``MultiDiscrete([V + 1] * length)`` actions: ``length`` word slots, each the empty word (0) or
    ``vocabulary[i - 1]``; the non-empty words, joined by spaces, are appended to the query (``mode="append"``,
    so every refinement's prompt is the query plus that action's words) or are the whole prompt
    (``mode="replace"``; all slots empty gives the empty, unconditional prompt).

    Args:
        env: a ``PromptLoop-v0`` env (possibly wrapped).
        vocabulary: the words (default: the toy grammar's, :func:`default_vocabulary`).
        length: ``L``, the number of word slots.
        mode: ``"append"`` or ``"replace"``.

    Raises:
        ValueError: for a bad ``length``, ``mode`` or vocabulary; ``step`` raises ``ValueError`` for an action
            that is not ``length`` integers in ``[0, V]``.
    """

    def __init__(
        self, env: gym.Env, vocabulary: Sequence[str] | None = None, length: int = 4, mode: str = "append"
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, vocabulary=vocabulary, length=length, mode=mode)
        gym.ActionWrapper.__init__(self, env)
        _base_env(env)
        self._codec = TokenCodec(vocabulary, length, mode)
        self.vocabulary, self.length, self.mode = self._codec.vocabulary, self._codec.length, mode
        self.action_space = self._codec.space

    def decode(self, action: Any) -> str:
        """The words of ``action`` joined by spaces (empty slots skipped)."""
        return self._codec.decode(action)

    def action(self, action: Any) -> str:
        """The prompt for ``action``: the query plus the decoded words, or the words alone."""
        return self._codec.prompt(action, *_current_texts(self.env))


#: The fields of the env's observation that :class:`NumericObservation` can keep, in its default order.
OBSERVATION_KEYS: tuple[str, ...] = ("preview", "progress", "query", "prompt")


class ObservationCodec:
    """Numeric observations without an env: the space, and ``encode`` of one env observation (its ``Dict``).

    Used by :class:`NumericObservation` (whose docstring tables the space) and by
    :class:`~promptloop_env.sb3.PromptLoopSB3VecEnv`:

    ```python
    >>> codec = ObservationCodec((32, 32), keys=("progress", "query"), vocabulary=["red", "circle"])
    >>> codec.encode({"progress": 0.5, "query": "a red circle"})["query"]
    array([1., 1., 1.], dtype=float32)

    ```

    Args:
        preview_shape: ``(H, W)`` of the env's preview.
        keys: the fields to keep, in order, among :data:`OBSERVATION_KEYS`; ``("preview",)`` alone encodes to
            the preview's array (a ``Box`` space), anything else to a dict (a ``Dict`` space).
        text: ``"bow"`` (bag of words) or ``"ids"`` (word ids, first ``max_words`` words).
        vocabulary: the words of the text encoding (default: the toy grammar's).
        max_words: ``"ids"`` only: words kept per text (the rest are cut).
        preview_size: resize the preview to ``(H, W)`` (an int for a square) or keep it (``None``).

    Attributes:
        keys: the kept fields, as a tuple.
        text: ``"bow"`` or ``"ids"``.
        vocabulary: the words, as a list.
        max_words: words kept per text with ``"ids"``.
        preview_size: ``(H, W)`` of the encoded preview.
        space: the observation space (a ``Dict``, or the preview's ``Box`` for ``keys=("preview",)``).

    Raises:
        ValueError: for an unknown key or encoding, or a bad ``max_words`` or ``preview_size``.
    """

    def __init__(
        self,
        preview_shape: tuple[int, int],
        keys: Sequence[str] = OBSERVATION_KEYS,
        text: str = "bow",
        vocabulary: Sequence[str] | None = None,
        max_words: int = 32,
        preview_size: int | tuple[int, int] | None = None,
    ) -> None:
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        unknown = [k for k in keys if k not in OBSERVATION_KEYS]
        if unknown or not keys or len(set(keys)) != len(keys):
            raise ValueError(f"keys must be distinct names among {OBSERVATION_KEYS}; got {keys}.")
        if text not in ("bow", "ids"):
            raise ValueError(f"text must be 'bow' (bag of words) or 'ids' (word ids); got {text!r}.")
        if int(max_words) < 1:
            raise ValueError(f"max_words must be at least 1; got {max_words}.")
        self.keys = keys
        self.text = text
        self.vocabulary = _vocabulary(vocabulary)
        self._index = {w: i for i, w in enumerate(self.vocabulary)}
        self.max_words = int(max_words)
        height, width = tuple(preview_shape)
        if preview_size is not None:
            height, width = (preview_size, preview_size) if isinstance(preview_size, int) else preview_size
            if int(height) < 1 or int(width) < 1:
                raise ValueError(f"preview_size must be positive; got {preview_size}.")
        self.preview_size = (int(height), int(width))
        self._resize = self.preview_size != tuple(preview_shape)
        V = len(self.vocabulary)
        text_space: spaces.Space = (
            spaces.Box(0.0, float(_MAX_WORDS), (V + 1,), np.float32)
            if text == "bow"
            else spaces.MultiDiscrete(np.full(self.max_words, V + 2, dtype=np.int64))
        )
        fields: dict[str, spaces.Space] = {
            "preview": spaces.Box(0, 255, (3, *self.preview_size), np.uint8),
            "progress": spaces.Box(0.0, 1.0, (1,), np.float32),
            "query": text_space,
            "prompt": text_space,
        }
        self.space: spaces.Space = (
            fields["preview"] if keys == ("preview",) else spaces.Dict({k: fields[k] for k in keys})
        )

    def encode_text(self, text: str) -> np.ndarray:
        """``text`` as a bag of words (``float32 [V + 1]``) or word ids (``int64 [max_words]``)."""
        words = tokenize(text)
        V = len(self.vocabulary)
        if self.text == "bow":
            counts = np.zeros(V + 1, dtype=np.float32)
            for word in words:
                counts[self._index.get(word, V)] += 1
            return np.minimum(counts, _MAX_WORDS)
        ids = np.zeros(self.max_words, dtype=np.int64)
        for j, word in enumerate(words[: self.max_words]):
            ids[j] = self._index[word] + 2 if word in self._index else 1
        return ids

    def encode_preview(self, preview: np.ndarray) -> np.ndarray:
        """``uint8 [H, W, 3]`` -> ``uint8 [3, H', W']`` at ``preview_size``."""
        if self._resize:
            height, width = self.preview_size
            preview = np.asarray(Image.fromarray(preview).resize((width, height), Image.BILINEAR))
        return np.ascontiguousarray(np.transpose(preview, (2, 0, 1)))

    def encode(self, observation: dict[str, Any]) -> np.ndarray | dict[str, np.ndarray]:
        """One env observation (at least the fields in ``keys``) -> an element of ``space``."""
        out: dict[str, np.ndarray] = {}
        for key in self.keys:
            value = observation[key]
            if key == "preview":
                out[key] = self.encode_preview(value)
            elif key == "progress":
                out[key] = np.asarray(value, dtype=np.float32).reshape(1)
            else:
                out[key] = self.encode_text(value)
        return out["preview"] if self.keys == ("preview",) else out


class NumericObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Numeric observations for SB3 and RLlib: the preview as a channel-first ``uint8`` image, progress, and
    the query and prompt encoded over a vocabulary (or dropped).

    ## Observation Space

    ``Dict`` with the chosen ``keys`` (all by default):

    | key        | space                                          | meaning                                 |
    |------------|------------------------------------------------|-----------------------------------------|
    | `preview`  | `Box(0, 255, (3, H, W), uint8)`                | x̂0 as RGB, channel first               |
    | `progress` | `Box(0, 1, (1,), float32)`                     | fraction of the denoising steps done    |
    | `query`    | `Box(0, 512, (V + 1,), float32)` (`"bow"`)     | word counts; the last counts unknowns   |
    |            | `MultiDiscrete([V + 2] * max_words)` (`"ids"`) | word ids: 0 pad, 1 unknown, 2 + i word i |
    | `prompt`   | as `query`                                     | the prompt in force                     |

    ``keys=("preview",)`` gives the preview's ``Box`` alone (not a ``Dict``), for ``CnnPolicy``.
    ``(H, W)`` is ``preview_size`` (default: the env's preview size). SB3's ``NatureCNN`` (the default feature
    extractor of ``CnnPolicy`` and ``MultiInputPolicy``) needs ``H, W >= 36``: the toy model's 32 x 32 previews
    need ``preview_size=36`` or more (resized here with PIL, bilinear) or a smaller custom feature extractor.
    SB3 divides ``uint8`` image observations by 255 itself (``normalize_images=True``).

    Args:
        env: a ``PromptLoop-v0`` env (possibly wrapped), whose observation is the env's ``Dict``.
        keys: which fields to keep, in order (any of ``preview``, ``progress``, ``query``, ``prompt``).
        text: ``"bow"`` (bag of words) or ``"ids"`` (word ids, first ``max_words`` words).
        vocabulary: the words of the text encoding (default: the toy grammar's).
        max_words: ``"ids"`` only: words kept per text (the rest are cut).
        preview_size: resize the preview to ``(H, W)`` (an int for a square) or keep it (``None``).

    Raises:
        ValueError: for an unknown key or encoding, or a bad ``max_words`` or ``preview_size``.
    """

    KEYS = OBSERVATION_KEYS

    def __init__(
        self,
        env: gym.Env,
        keys: Sequence[str] = KEYS,
        text: str = "bow",
        vocabulary: Sequence[str] | None = None,
        max_words: int = 32,
        preview_size: int | tuple[int, int] | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, keys=keys, text=text, vocabulary=vocabulary, max_words=max_words, preview_size=preview_size
        )
        gym.ObservationWrapper.__init__(self, env)
        _base_env(env)
        inner = env.observation_space
        if not isinstance(inner, spaces.Dict) or not set(self.KEYS) <= set(inner.spaces):
            raise TypeError(
                f"NumericObservation expects the env's Dict observation with keys {self.KEYS}; got {inner}. "
                "Put it inside wrappers that change the observation."
            )
        self._codec = ObservationCodec(inner["preview"].shape[:2], keys, text, vocabulary, max_words, preview_size)
        self.keys, self.text, self.vocabulary = self._codec.keys, text, self._codec.vocabulary
        self.max_words, self.preview_size = self._codec.max_words, self._codec.preview_size
        self.observation_space = self._codec.space

    def encode_text(self, text: str) -> np.ndarray:
        """``text`` as a bag of words (``float32 [V + 1]``) or word ids (``int64 [max_words]``)."""
        return self._codec.encode_text(text)

    def encode_preview(self, preview: np.ndarray) -> np.ndarray:
        """``uint8 [H, W, 3]`` -> ``uint8 [3, H', W']`` at ``preview_size``."""
        return self._codec.encode_preview(preview)

    def observation(self, observation: dict[str, Any]) -> Any:
        return self._codec.encode(observation)


def __getattr__(name: str) -> Any:
    # make_sb3_env moved to promptloop_env.sb3, which imports this module: resolved lazily, for old imports.
    if name == "make_sb3_env":
        from .sb3 import make_sb3_env

        return make_sb3_env
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
