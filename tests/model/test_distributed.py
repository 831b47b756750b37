"""DDP on CPU with gloo and two processes matches a single process on the same global batch."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT, UCM_ANNOTATIONS
from tests.model.ddp_worker import build, global_batch, step_gradients



def torchrun() -> list[str]:
    """Return a torchrun command line for two local processes on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(port)]


def test_two_ranks_match_one_process(tmp_path):
    output = tmp_path / "rank0.pt"
    subprocess.run([*torchrun(), "-m", "tests.model.ddp_worker", str(output)], cwd=REPO_ROOT, check=True,
                   timeout=300, capture_output=True)
    distributed = torch.load(output, weights_only=False)
    model = build()
    loss, grads = step_gradients(model, *global_batch(model))
    assert distributed["loss"] == pytest.approx(loss, rel=1e-5)
    assert set(distributed["grads"]) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(distributed["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_training_job_runs_under_torchrun(tmp_path):
    overrides = ["backbone.kind=tiny", "backbone.model_name=tiny-vit", f"train_annotations={UCM_ANNOTATIONS}",
                 "batch_size=4", "max_steps_per_epoch=2", "num_workers=0", "epochs=1", f"output_dir={tmp_path}"]
    args = [arg for override in overrides for arg in ("--set", override)]
    result = subprocess.run([*torchrun(), "-m", "model.train", *args], cwd=REPO_ROOT, timeout=600,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2" in result.stderr
    assert (tmp_path / "best" / "adapter_model.safetensors").is_file()
