"""The reward protocol, the registry by name, and weighted sums."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Reward", "RewardFn", "WeightedSum", "as_reward", "make_reward", "register_reward", "reward_names"]

RewardFn = Callable[[np.ndarray, list[str]], Any]


@runtime_checkable
class Reward(Protocol):
    """Scores final images against the queries they were drawn for.

    ``__call__(images, queries)`` takes ``uint8 [N, H, W, 3]`` images and ``N`` queries and returns a float
    array ``[N]``. ``components`` returns the named parts of the score (a single reward: itself) and
    ``total`` combines them, so that the parts are computed once.
    """

    name: str

    def __call__(self, images: np.ndarray, queries: list[str]) -> np.ndarray: ...

    def components(self, images: np.ndarray, queries: list[str]) -> dict[str, np.ndarray]: ...

    def total(self, components: Mapping[str, np.ndarray]) -> np.ndarray: ...


_REGISTRY: dict[str, Callable[..., RewardFn]] = {}


def register_reward(name: str) -> Callable[[Callable[..., RewardFn]], Callable[..., RewardFn]]:
    """Register a reward factory under ``name``.

    The factory is called with no arguments, or with the keyword options given to :func:`make_reward` (the
    learned rewards take ``device``, ``dtype``, ``batch_size`` and their model's location). A factory may load
    a model, so :func:`make_reward` builds one only when asked for it by name.
    """

    def decorator(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        _REGISTRY[name] = factory
        return factory

    return decorator


def reward_names() -> list[str]:
    """The registered reward names."""
    return sorted(_REGISTRY)


def _check(name: str, values: Any, n: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"Reward {name!r} returned {type(values).__name__}, not an array of floats.") from err
    if array.shape != (n,):
        raise ValueError(f"Reward {name!r} returned shape {array.shape}; expected ({n},), one score per image.")
    if not np.isfinite(array).all():
        raise ValueError(f"Reward {name!r} returned a non-finite score: {array.tolist()}.")
    return array


class CallableReward:
    """A plain ``fn(images, queries) -> [N]`` as a :class:`Reward` (with output checks)."""

    def __init__(self, fn: RewardFn, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or getattr(fn, "name", None) or type(fn).__name__

    def __call__(self, images: np.ndarray, queries: list[str]) -> np.ndarray:
        return _check(self.name, self.fn(images, list(queries)), len(images))

    def components(self, images: np.ndarray, queries: list[str]) -> dict[str, np.ndarray]:
        return {self.name: self(images, queries)}

    def total(self, components: Mapping[str, np.ndarray]) -> np.ndarray:
        return components[self.name]

    def check_queries(self, queries: list[str]) -> None:
        """Raise ``ValueError`` naming the first query the reward cannot grade (through the function's own
        ``check_query(query)``, when it has one), so that bad queries fail at ``reset``, not after sampling."""
        check = getattr(self.fn, "check_query", None)
        if check is None:
            return
        for i, query in enumerate(queries):
            try:
                check(query)
            except Exception as error:
                raise ValueError(
                    f"Query {i} ({query!r:.120}) cannot be graded by the reward {self.name!r}: {error}"
                ) from error

    def __repr__(self) -> str:
        return f"CallableReward({self.name!r})"


class WeightedSum:
    """``sum_i weight_i * reward_i``; ``components`` reports each unweighted part by name."""

    def __init__(self, parts: Mapping[str, tuple[float, Reward]]):
        self.parts: dict[str, tuple[float, Reward]] = dict(parts)
        if not self.parts:
            raise ValueError("WeightedSum needs at least one component.")
        self.name = " + ".join(f"{w:g}*{n}" for n, (w, _) in self.parts.items())

    def components(self, images: np.ndarray, queries: list[str]) -> dict[str, np.ndarray]:
        return {name: reward(images, queries) for name, (_, reward) in self.parts.items()}

    def total(self, components: Mapping[str, np.ndarray]) -> np.ndarray:
        return sum(w * components[n] for n, (w, _) in self.parts.items())

    def __call__(self, images: np.ndarray, queries: list[str]) -> np.ndarray:
        return self.total(self.components(images, queries))

    def check_queries(self, queries: list[str]) -> None:
        """Every part's :meth:`CallableReward.check_queries`."""
        for _, reward in self.parts.values():
            check = getattr(reward, "check_queries", None)
            if check is not None:
                check(queries)


def as_reward(fn: RewardFn | Reward, name: str | None = None) -> Reward:
    """Wrap a plain callable (or keep a :class:`Reward`)."""
    if isinstance(fn, (CallableReward, WeightedSum)):
        return fn
    return CallableReward(fn, name)


def make_reward(spec: str | RewardFn | Mapping[str, float] | Reward, **options: Any) -> Reward:
    """A reward from a registered name, a ``{name: weight}`` mapping, or a callable.

    Args:
        spec: a registered name (``"jpeg_compressibility"``, ``"imagereward"``, ...), a ``{name: weight}``
            mapping (a :class:`WeightedSum`), or a callable ``(images, queries) -> [N]``.
        **options: keyword options for a named reward's factory, e.g.
            ``make_reward("imagereward", device="cuda", dtype="float16")``.

    Raises:
        ValueError: for an unknown name, listing the registered ones, or options the reward does not take.
    """
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise ValueError(f"Unknown reward {spec!r}; registered rewards: {', '.join(reward_names())}.")
        factory = _REGISTRY[spec]
        if options:
            try:
                inspect.signature(factory).bind(**options)
            except TypeError as err:
                raise ValueError(f"Reward {spec!r} does not take the options {sorted(options)}: {err}.") from err
        return CallableReward(factory(**options), spec)
    if options:
        raise ValueError("Options apply to a single named reward; build each part with make_reward(name, ...) first.")
    if isinstance(spec, Mapping):
        return WeightedSum({name: (float(w), make_reward(name)) for name, w in spec.items()})
    if callable(spec):
        return as_reward(spec)
    raise TypeError(
        f"reward must be a registered name, a {{name: weight}} mapping or a callable; got {type(spec).__name__}."
    )
