"""Training checkpoints: written atomically, verified on load, never trusted blindly.

A checkpoint folder (``checkpoints/update_N``) holds the LoRA adapter (safetensors), the value head
(safetensors), the optimizer state (``torch.save``, loaded with ``weights_only=True``), the sampling RNG states
(safetensors), ``state.json`` and ``manifest.json`` (SHA-256 and size of every other file). Everything is
written into a temporary sibling folder, flushed, and renamed into place in one step; a crash mid-write
leaves the previous checkpoint untouched. ``checkpoints/latest`` names the newest one (only ever an
``update_N`` name in the same folder). Loading checks the manifest, refuses missing or unexpected tensors and
non-finite values, and raises :class:`CheckpointError` naming the file; resuming from a run folder falls back
to the newest complete checkpoint when the latest is damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "atomic_folder",
    "atomic_write_text",
    "checkpoint_dir",
    "find_checkpoint",
    "load_checkpoint",
    "rng_states",
    "save_checkpoint",
]

_NAME = re.compile(r"^update_\d{6,}$")
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete, damaged or does not fit the agent; the message names the file."""


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` (an existing one is swapped out first)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_dir(out: Path, update: int) -> Path:
    """``out/checkpoints/update_NNNNNN``."""
    return Path(out) / "checkpoints" / f"update_{update:06d}"


def _rng_key(name: str, process: int) -> str:
    """Process 0's RNG states are stored as ``torch`` / ``cuda`` (the single-process names), process p's as
    ``torch_process_p`` / ``cuda_process_p``."""
    return name if process == 0 else f"{name}_process_{process}"


def rng_states(accelerator: Any = None) -> dict[str, torch.Tensor]:
    """The sampling RNG states of this process (torch's, and the current CUDA device's when it has one), or, with
    a multi-process ``accelerator``, of every process (gathered; every process must call it)."""
    local = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        local["cuda"] = torch.cuda.get_rng_state()
    if accelerator is None or accelerator.num_processes == 1:
        return local
    states = {}
    for name, state in local.items():
        gathered = accelerator.gather(state.to(accelerator.device)[None]).cpu()
        states.update({_rng_key(name, p): gathered[p] for p in range(accelerator.num_processes)})
    return states


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def verify(folder: Path) -> None:
    """Raise :class:`CheckpointError` naming the first file that is missing or differs from the manifest."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {folder} is incomplete or unreadable: {path.name}: {error}") from error
    for name, entry in manifest.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"Checkpoint {folder} is incomplete or unreadable: {name} is missing.")
        if file.stat().st_size != entry.get("bytes") or _sha256(file) != entry.get("sha256"):
            raise CheckpointError(
                f"Checkpoint {folder} is incomplete or unreadable: {name} differs from its manifest (damaged or "
                "changed after writing)."
            )


def save_checkpoint(
    out: Path,
    update: int,
    agent: Any,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng: dict[str, torch.Tensor] | None = None,
    keep: int = 2,
) -> Path:
    """Write the adapter, value head, optimizer and RNG states (``rng``, default: this process's) and ``state``
    (JSON; ``update`` is added) after ``update`` updates, atomically, with a manifest; point ``latest`` at it and
    keep the ``keep`` newest checkpoints."""
    from safetensors.torch import save_file

    target = checkpoint_dir(out, update)
    with atomic_folder(target) as folder:
        agent.model.save_pretrained(str(folder / "adapter"))
        if agent.value_head is not None:
            save_file(agent.value_head.state_dict(), str(folder / "value_head.safetensors"))
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        save_file(rng if rng is not None else rng_states(), str(folder / "rng.safetensors"))
        (folder / "state.json").write_text(json.dumps({"update": update, **state}, indent=2))
        _write_manifest(folder)
    atomic_write_text(Path(out) / "checkpoints" / "latest", target.name + "\n")
    kept = sorted(p for p in (Path(out) / "checkpoints").glob("update_*") if _NAME.match(p.name))
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def find_checkpoint(path: str | Path) -> Path:
    """A verified checkpoint folder: ``path`` itself when it is one, else the run folder's ``checkpoints/latest``,
    falling back (with a warning) to the newest complete checkpoint when the latest is missing or damaged."""
    path = Path(path)
    if (path / "state.json").exists() or (path / MANIFEST).exists():
        verify(path)
        return path
    folder = path / "checkpoints"
    candidates: list[Path] = []
    latest = folder / "latest"
    if latest.is_file():
        name = latest.read_text().strip()
        if not _NAME.match(name):
            warnings.warn(f"{latest} names {name!r}, not a checkpoint of this run (update_N); ignored.", stacklevel=2)
        else:
            candidates.append(folder / name)
    if folder.is_dir():
        candidates += sorted((p for p in folder.glob("update_*") if _NAME.match(p.name)), reverse=True)
    errors = []
    for candidate in dict.fromkeys(candidates):
        try:
            verify(candidate)
        except CheckpointError as error:
            errors.append(str(error))
            continue
        if errors:
            warnings.warn(f"Resuming from {candidate.name}, the newest complete checkpoint: {errors[0]}", stacklevel=2)
        return candidate
    if errors:
        raise CheckpointError(errors[0])
    raise CheckpointError(
        f"No checkpoint at {path}: expected a run folder with checkpoints/latest or a checkpoint folder with "
        "state.json (written by `promptloop train`)."
    )


def _check_tensors(file: Path, loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(set(expected) - set(loaded)), sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{file} does not fit the agent: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}."
        )
    for name, tensor in loaded.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{file}: tensor {name} has shape {tuple(tensor.shape)}, the agent's {tuple(expected[name].shape)}."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{file}: tensor {name} has non-finite values (NaN or inf).")


def load_checkpoint(path: str | Path, agent: Any, optimizer: torch.optim.Optimizer, process: int = 0) -> int:
    """Restore adapter, value head, optimizer and RNG state (process ``process``'s in a multi-process run) from
    a verified checkpoint; return the number of updates done.

    Raises:
        CheckpointError: naming the file that is missing, damaged, unreadable or does not fit the agent.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = find_checkpoint(path)

    def read(name: str, loader: Any) -> Any:
        try:
            return loader(folder / name)
        except Exception as error:  # noqa: BLE001  (every way a file can be bad ends in one clear error)
            raise CheckpointError(
                f"Checkpoint {folder} is incomplete or unreadable: {name}: {type(error).__name__}: {error}"
            ) from error

    state = read("state.json", lambda p: json.loads(p.read_text()))
    if not isinstance(state, dict) or not isinstance(state.get("update"), int) or state["update"] < 0:
        raise CheckpointError(f"Checkpoint {folder}: state.json has no valid 'update' count: {state!r:.200}.")
    adapter_file = "adapter/adapter_model.safetensors"
    adapter = read(adapter_file, lambda p: load_file(str(p)))
    _check_tensors(folder / adapter_file, adapter, get_peft_model_state_dict(agent.model))
    set_peft_model_state_dict(agent.model, adapter)
    if agent.value_head is not None:
        head = read("value_head.safetensors", lambda p: load_file(str(p)))
        _check_tensors(folder / "value_head.safetensors", head, agent.value_head.state_dict())
        agent.value_head.load_state_dict(head)
    optimizer_state = read("optimizer.pt", lambda p: torch.load(p, weights_only=True))
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{folder / 'optimizer.pt'} does not fit the optimizer: {error}") from error
    rng = read("rng.safetensors", lambda p: load_file(str(p)))
    if _rng_key("torch", process) in rng:
        torch.set_rng_state(rng[_rng_key("torch", process)])
        if _rng_key("cuda", process) in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng[_rng_key("cuda", process)])
    else:
        warnings.warn(
            f"Checkpoint {folder} was written by {state.get('num_processes', 1)} process(es) and has no sampling "
            f"RNG state for process {process}; it continues from a fresh seed, so the run is not an exact "
            "continuation.",
            stacklevel=2,
        )
    return int(state["update"])
