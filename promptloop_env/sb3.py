"""Stable-Baselines3 entry points: ``make_sb3_env`` (one wrapped env) and ``PromptLoopSB3VecEnv`` (a batch).

Both build the same numeric task from the same options, a :class:`NumericEnvSpec`: the env's id and arguments,
and the adapters' (:mod:`promptloop_env.wrappers`) action and observation settings. ``make_vec_env(make_sb3_env,
n_envs=N)`` gives SB3 a ``DummyVecEnv`` of N single envs: N separate denoiser calls per step.
:class:`PromptLoopSB3VecEnv` instead drives one :class:`~promptloop_env.vector.PromptLoopVectorEnv` (one
denoiser call per step for all N trajectories, a few times more episodes per second on a CPU) with the same
numeric actions and observations, through the same codecs.

```python
>>> from stable_baselines3 import PPO
>>> from stable_baselines3.common.vec_env import VecMonitor
>>> from promptloop_env.sb3 import PromptLoopSB3VecEnv
>>> venv = VecMonitor(PromptLoopSB3VecEnv(4, num_inference_steps=6, num_refinements=2))
>>> model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=32, device="cpu").learn(32)

```

All N trajectories share their refinement points and end together (see the vector env); SB3's conventions
hold: when they end, ``step`` returns the first observations of the next episodes and each info carries
``terminal_observation``. ``seed(s)`` seeds sub-env i with ``s + i`` at the next ``reset``;
``set_options({"query": ...})`` fixes its queries (a str for all, or one per sub-env).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from .vector import PromptLoopVectorEnv
from .wrappers import (
    OBSERVATION_KEYS,
    NumericObservation,
    ObservationCodec,
    PromptBankAction,
    PromptBankCodec,
    TokenAction,
    TokenCodec,
)

__all__ = ["NumericEnvSpec", "PromptLoopSB3VecEnv", "make_sb3_env"]


@dataclass(frozen=True)
class NumericEnvSpec:
    """One numeric ``PromptLoop`` task: which env, and how its text actions and observations become numbers.

    The options of :func:`make_sb3_env` and :class:`PromptLoopSB3VecEnv`, which take these fields as keywords
    (every other keyword is an env argument, collected in ``env_kwargs``): :meth:`from_kwargs` does that split.

    ```python
    >>> spec = NumericEnvSpec.from_kwargs(action="tokens", vocabulary=["red", "blue"], length=2, num_inference_steps=6)
    >>> spec.action_codec().space, spec.env_kwargs
    (MultiDiscrete([3 3]), {'num_inference_steps': 6})

    ```

    Args:
        env_id: the registered id.
        action: ``"bank"`` (:class:`~promptloop_env.wrappers.PromptBankCodec`, ``Discrete``) or ``"tokens"``
            (:class:`~promptloop_env.wrappers.TokenCodec`, ``MultiDiscrete``).
        bank: the prompt templates of ``action="bank"`` (default :data:`~promptloop_env.wrappers.DEFAULT_BANK`).
        vocabulary: the words of the token actions and of the text observations (default: the toy grammar's).
        length: word slots of ``action="tokens"``.
        mode: ``"append"`` or ``"replace"``, for ``action="tokens"``.
        keys: the observation's fields, as in :class:`~promptloop_env.wrappers.NumericObservation`.
        text: ``"bow"`` or ``"ids"``, the text encoding.
        max_words: words kept per text with ``text="ids"``.
        preview_size: the preview's size (default 36, the smallest SB3's ``NatureCNN`` takes).
        env_kwargs: the env's arguments (``num_inference_steps``, ``reward``, ``prompts``, ...).

    Raises:
        ValueError: for an unknown ``action``; the codecs raise for their arguments' errors when built.
    """

    env_id: str = "PromptLoop-v0"
    action: str = "bank"
    bank: Sequence[str] | None = None
    vocabulary: Sequence[str] | None = None
    length: int = 4
    mode: str = "append"
    keys: Sequence[str] = OBSERVATION_KEYS
    text: str = "bow"
    max_words: int = 32
    preview_size: int | tuple[int, int] | None = 36
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ("bank", "tokens"):
            raise ValueError(f"action must be 'bank' or 'tokens'; got {self.action!r}.")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> NumericEnvSpec:
        """The spec from keywords: this class's fields by name, every other keyword an env argument."""
        names = {f.name for f in fields(cls)} - {"env_kwargs"}
        env_kwargs = {k: v for k, v in kwargs.items() if k not in names}
        return cls(**{k: v for k, v in kwargs.items() if k in names}, env_kwargs=env_kwargs)

    def action_codec(self) -> PromptBankCodec | TokenCodec:
        """The codec of ``action``: action -> prompt."""
        if self.action == "bank":
            return PromptBankCodec(self.bank)
        return TokenCodec(self.vocabulary, self.length, self.mode)

    def observation_codec(self, preview_shape: tuple[int, int]) -> ObservationCodec:
        """The observation codec for an env whose previews are ``preview_shape`` = ``(H, W)``."""
        return ObservationCodec(preview_shape, self.keys, self.text, self.vocabulary, self.max_words, self.preview_size)


def make_sb3_env(
    env_id: str = "PromptLoop-v0", *, wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (), **options: Any
) -> gym.Env:
    """A ``PromptLoop`` env with numeric actions and observations, ready for SB3's ``MultiInputPolicy`` (or
    ``CnnPolicy`` with ``keys=("preview",)``): ``gym.make(env_id, **env_kwargs)``, then ``wrappers`` (e.g.
    ``gym.wrappers.TimeLimit``), then :class:`~promptloop_env.wrappers.PromptBankAction` (``action="bank"``) or
    :class:`~promptloop_env.wrappers.TokenAction` (``action="tokens"``), then
    :class:`~promptloop_env.wrappers.NumericObservation`.

    (In 0.1.0 it lived in :mod:`promptloop_env.wrappers`; it can still be imported from there.)

    Args:
        env_id: the registered id.
        wrappers: callables ``env -> env`` applied to the text env before the adapters.
        **options: :class:`NumericEnvSpec`'s fields (``action``, ``bank``, ``vocabulary``, ``length``, ``mode``,
            ``keys``, ``text``, ``max_words``, ``preview_size``); every other keyword is an env argument
            (``num_inference_steps``, ``reward``, ``prompts``, ...).

    Raises:
        ValueError: for an unknown ``action`` and the errors of the adapters' arguments.

    ```python
    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = make_vec_env(make_sb3_env, n_envs=2, env_kwargs=dict(num_inference_steps=6, num_refinements=1))
    >>> venv.action_space
    Discrete(8)

    ```
    """
    spec = NumericEnvSpec.from_kwargs(env_id=env_id, **options)
    env = gym.make(spec.env_id, **spec.env_kwargs)
    for wrapper in wrappers:
        env = wrapper(env)
    if spec.action == "bank":
        env = PromptBankAction(env, spec.bank)
    else:
        env = TokenAction(env, spec.vocabulary, length=spec.length, mode=spec.mode)
    return NumericObservation(
        env,
        keys=spec.keys,
        text=spec.text,
        vocabulary=spec.vocabulary,
        max_words=spec.max_words,
        preview_size=spec.preview_size,
    )


class PromptLoopSB3VecEnv(VecEnv):
    """N batched ``PromptLoop`` trajectories with numeric actions and observations, as an SB3 ``VecEnv``.

    Args:
        num_envs: N, trajectories per batch.
        env_id: the registered id (``gym.make_vec(env_id, vectorization_mode="vector_entry_point")``).
        **options: :class:`NumericEnvSpec`'s fields (``action``, ``bank``, ``vocabulary``, ``length``, ``mode``,
            ``keys``, ``text``, ``max_words``, ``preview_size``), as for :func:`make_sb3_env`; every other keyword
            is an env argument (``num_inference_steps``, ``reward``, ``prompts``, ...).

    Attributes:
        numeric_spec: the :class:`NumericEnvSpec` built from the arguments.
        action_codec: the spec's action codec (action -> prompt).
        observation_codec: the spec's observation codec.

    Raises:
        ValueError: for an unknown ``action`` and the errors of the adapters' arguments.
    """

    def __init__(self, num_envs: int, env_id: str = "PromptLoop-v0", **options: Any) -> None:
        self.numeric_spec = NumericEnvSpec.from_kwargs(env_id=env_id, **options)
        self.action_codec = self.numeric_spec.action_codec()
        self.envs = gym.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **self.numeric_spec.env_kwargs
        )
        if not isinstance(self.envs.unwrapped, PromptLoopVectorEnv):
            raise TypeError(f"{env_id!r} is not a PromptLoop env; got {type(self.envs.unwrapped).__name__}.")
        preview_shape = self.envs.single_observation_space["preview"].shape[:2]
        self.observation_codec = self.numeric_spec.observation_codec(preview_shape)
        # SB3's __init__ reads render_mode through get_attr, which needs self.envs
        super().__init__(num_envs, self.observation_codec.space, self.action_codec.space)
        self._actions: np.ndarray | None = None

    # -- stepping ---------------------------------------------------------------------------------------

    def _encode(self, obs: dict[str, Any]) -> VecEnvObs:
        rows = [self.observation_codec.encode({k: obs[k][i] for k in obs}) for i in range(self.num_envs)]
        if isinstance(rows[0], dict):
            return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        return np.stack(rows)

    def _row(self, obs: VecEnvObs, i: int) -> Any:
        return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]

    def _split_infos(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        """Gymnasium's vector infos (arrays with ``_key`` masks, nested for dict values) -> one dict per env."""
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, values in infos.items():
            if key.startswith("_"):
                continue
            mask = infos.get("_" + key, np.ones(self.num_envs, dtype=bool))
            rows = self._split_infos(values) if isinstance(values, dict) else values
            for i in range(self.num_envs):
                if mask[i]:
                    out[i][key] = rows[i]
        return out

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        queries = [o.get("query") for o in self._options]
        options = {"query": queries} if all(q is not None for q in queries) else None
        obs, infos = self.envs.reset(seed=seeds, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._split_infos(infos)
        return self._encode(obs)

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options for the next ``reset``: ``{"query": str}`` for all sub-envs, or one dict per sub-env (every
        sub-env must then name a query)."""
        if isinstance(options, dict) and isinstance(options.get("query"), (list, tuple)):
            options = [{"query": q} for q in options["query"]]
        super().set_options(options)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions).")
        engine = self.envs.unwrapped.engine
        prompts = [
            self.action_codec.prompt(a, q, p)
            for a, q, p in zip(self._actions, engine.queries, engine.prompts, strict=True)
        ]
        self._actions = None
        obs, rewards, terminated, truncated, infos = self.envs.step(prompts)
        encoded = self._encode(obs)
        dones = np.asarray(terminated) | np.asarray(truncated)
        split = self._split_infos(infos)
        if dones.any():  # all sub-envs end together: start the next episodes now, as SB3 expects
            for i, info in enumerate(split):
                info["terminal_observation"] = self._row(encoded, i)
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            obs, reset_infos = self.envs.reset()
            self.reset_infos = self._split_infos(reset_infos)
            encoded = self._encode(obs)
        return encoded, np.asarray(rewards, dtype=np.float32), dones, split

    # -- the rest of SB3's VecEnv interface ----------------------------------------------------------------

    def close(self) -> None:
        self.envs.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.envs.render())

    def _indices(self, indices: VecEnvIndices) -> Iterable[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the (shared) vector env, once per index."""
        return [getattr(self.envs.unwrapped, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.envs.unwrapped, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        result = getattr(self.envs.unwrapped, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
