"""``PromptLoopSB3VecEnv``: the batched ``PromptLoop`` vector env as a Stable-Baselines3 ``VecEnv``.

``make_vec_env(make_sb3_env, n_envs=N)`` gives SB3 a ``DummyVecEnv`` of N single envs: N separate denoiser
calls per step. This ``VecEnv`` instead drives one :class:`~promptloop_env.vector.PromptLoopVectorEnv` (one
denoiser call per step for all N trajectories, a few times more episodes per second on a CPU) with the same
numeric actions and observations as :mod:`promptloop_env.wrappers`.

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

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from .vector import PromptLoopVectorEnv
from .wrappers import _KEYS, _Bank, _Encoder, _Tokens

__all__ = ["PromptLoopSB3VecEnv"]


class PromptLoopSB3VecEnv(VecEnv):
    """N batched ``PromptLoop`` trajectories with numeric actions and observations, as an SB3 ``VecEnv``.

    Args:
        num_envs: N, trajectories per batch.
        env_id: the registered id (``gym.make_vec(env_id, vectorization_mode="vector_entry_point")``).
        action: ``"bank"`` (:class:`~promptloop_env.wrappers.PromptBankAction`'s ``Discrete``) or ``"tokens"``
            (:class:`~promptloop_env.wrappers.TokenAction`'s ``MultiDiscrete``).
        bank: the prompt templates of ``action="bank"`` (default :data:`~promptloop_env.wrappers.DEFAULT_BANK`).
        vocabulary: the words of the token actions and of the text observations (default: the toy grammar's).
        length: word slots of ``action="tokens"``.
        mode: ``"append"`` or ``"replace"``, for ``action="tokens"``.
        keys: the observation's fields, as in :class:`~promptloop_env.wrappers.NumericObservation`.
        text: ``"bow"`` or ``"ids"``, the text encoding.
        max_words: words kept per text with ``text="ids"``.
        preview_size: the preview's size (default 36, the smallest SB3's ``NatureCNN`` takes).
        **env_kwargs: the env's arguments (``num_inference_steps``, ``reward``, ``prompts``, ...).

    Raises:
        ValueError: for an unknown ``action`` and the errors of the adapters' arguments.
    """

    def __init__(
        self,
        num_envs: int,
        env_id: str = "PromptLoop-v0",
        action: str = "bank",
        bank: Sequence[str] | None = None,
        vocabulary: Sequence[str] | None = None,
        length: int = 4,
        mode: str = "append",
        keys: Sequence[str] = _KEYS,
        text: str = "bow",
        max_words: int = 32,
        preview_size: int | tuple[int, int] | None = 36,
        **env_kwargs: Any,
    ) -> None:
        if action == "bank":
            self._action: _Bank | _Tokens = _Bank(bank)
        elif action == "tokens":
            self._action = _Tokens(vocabulary, length, mode)
        else:
            raise ValueError(f"action must be 'bank' or 'tokens'; got {action!r}.")
        self.envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
        if not isinstance(self.envs.unwrapped, PromptLoopVectorEnv):
            raise TypeError(f"{env_id!r} is not a PromptLoop env; got {type(self.envs.unwrapped).__name__}.")
        preview_shape = self.envs.single_observation_space["preview"].shape[:2]
        self._encoder = _Encoder(preview_shape, keys, text, vocabulary, max_words, preview_size)
        super().__init__(num_envs, self._encoder.space, self._action.space)  # reads render_mode via get_attr
        self._actions: np.ndarray | None = None

    # -- stepping ---------------------------------------------------------------------------------------

    def _encode(self, obs: dict[str, Any]) -> VecEnvObs:
        rows = [self._encoder.encode({k: obs[k][i] for k in obs}) for i in range(self.num_envs)]
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
            self._action.prompt(a, q, p) for a, q, p in zip(self._actions, engine.queries, engine.prompts, strict=True)
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
