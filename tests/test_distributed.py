"""Multi-process training: two CPU processes over gloo (accelerate's ``debug_launcher``) train the toy policy
data-parallel; their adapters stay identical, only the main process writes, and a resumed run continues exactly."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from agents.train import TrainConfig

pytestmark = pytest.mark.slow


def run_config(out: Path, **overrides) -> TrainConfig:
    settings = dict(
        num_inference_steps=4,
        num_refinements=1,
        queries_per_update=2,  # one GRPO group per process
        group_size=2,
        updates=2,
        checkpoint_every=1,
        log_images_every=1,
        device="cpu",
        out=str(out),
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def worker(root: str) -> None:
    """One process of the launch: a 2-update run, then a 1-update run resumed to 2; records what it wrote."""
    from accelerate.state import AcceleratorState
    from peft import get_peft_model_state_dict

    # The fork inherits the test process's (single-process) accelerate state: start from a clean one.
    AcceleratorState._reset_state(reset_partial_state=True)
    training = importlib.import_module("agents.train")  # the module (the package exports a function by that name)
    root = Path(root)
    rank = torch.distributed.get_rank()  # the launcher's process group (gloo)
    writes = []
    real_atomic_folder = training.atomic_folder

    @contextlib.contextmanager
    def recorded(target):
        writes.append(str(target))
        with real_atomic_folder(target) as folder:
            yield folder

    checkpoints = importlib.import_module("agents.checkpoint")  # checkpoints are written there, the agent here
    training.atomic_folder = checkpoints.atomic_folder = recorded  # record, then write as usual
    try:
        straight = training.train(run_config(root / "straight"), progress=False)
        training.train(run_config(root / "split", updates=1), progress=False)
        resumed = training.train(run_config(root / "split", resume=str(root / "split")), progress=False)
    finally:
        training.atomic_folder = checkpoints.atomic_folder = real_atomic_folder
    for name, result in (("straight", straight), ("resumed", resumed)):
        save_file(get_peft_model_state_dict(result["policy"].model), str(root / f"{name}_{rank}.safetensors"))
    record = {"pid": os.getpid(), "writes": writes, "return": straight["metrics"]["charts/episodic_return"]}
    (root / f"rank_{rank}.json").write_text(json.dumps(record))


@pytest.mark.skipif(sys.platform == "win32", reason="debug_launcher forks")
def test_two_processes_train_one_policy(tmp_path):
    from peft import get_peft_model_state_dict

    from agents.train import load_agent

    # debug_launcher forks. Forking this process after earlier tests ran torch's OpenMP thread pool deadlocks the
    # children (a known fork-after-threads hazard), so the launch runs from a fresh interpreter.
    launch = (
        "import sys; sys.path.insert(0, sys.argv[1]); from accelerate import debug_launcher; "
        "from test_distributed import worker; debug_launcher(worker, args=(sys.argv[2],), num_processes=2)"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", launch, str(Path(__file__).parent), str(tmp_path)], cwd=root, check=True, timeout=600
    )
    ranks = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)]
    straight = [load_file(str(tmp_path / f"straight_{r}.safetensors")) for r in (0, 1)]
    resumed = [load_file(str(tmp_path / f"resumed_{r}.safetensors")) for r in (0, 1)]

    # The same start everywhere: the seeded adapter of a single process.
    torch.manual_seed(0)
    start = load_agent("toy")
    start.add_lora(r=8, alpha=16)
    initial = get_peft_model_state_dict(start.model)
    assert straight[0].keys() == straight[1].keys() == initial.keys()
    for key in initial:  # gradients were averaged: both processes hold the same adapter after every update
        assert torch.equal(straight[0][key], straight[1][key]), key
    assert any(not torch.equal(straight[0][k], initial[k]) for k in initial)  # and it learned something

    # Only the main process wrote checkpoints, the final agent and TensorBoard.
    assert ranks[1]["writes"] == []
    written = [Path(w).name for w in ranks[0]["writes"]]
    assert written.count("agent") == 3 and written.count("update_000002") == 2
    events = list((tmp_path / "straight" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].name.split(".")[-2] == str(ranks[0]["pid"])
    assert ranks[0]["return"] == ranks[1]["return"]  # logged metrics are over all processes
    rng = load_file(str(tmp_path / "straight" / "checkpoints" / "update_000002" / "rng.safetensors"))
    assert set(rng) == {"torch", "torch_process_1"} and not torch.equal(rng["torch"], rng["torch_process_1"])

    # A resumed multi-process run continues exactly as the uninterrupted one.
    saved = load_file(str(tmp_path / "split" / "agent" / "adapter_model.safetensors"))
    for key in initial:
        torch.testing.assert_close(resumed[0][key], straight[0][key], atol=1e-6, rtol=0)
        assert torch.equal(resumed[0][key], resumed[1][key])
    assert saved.keys() == load_file(str(tmp_path / "straight" / "agent" / "adapter_model.safetensors")).keys()
