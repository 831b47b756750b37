"""Training job smoke runs on the bundled data with a tiny model: outputs, resume, checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import load_adapters
from model.errors import CheckpointMismatch, ConfigError
from model.train import main as train_main
from model.training.config import load_train_config
from tests.conftest import UCM_ANNOTATIONS

TINY_RUN = [
    "backbone.kind=tiny", "backbone.model_name=tiny-vit", f"train_annotations={UCM_ANNOTATIONS}",
    "batch_size=8", "max_steps_per_epoch=3", "num_workers=0", "eval_batch_size=128",
]


def _train(output_dir, *overrides):
    args = []
    for override in [*TINY_RUN, f"output_dir={output_dir}", *overrides]:
        args += ["--set", override]
    assert train_main(args) == 0


def test_training_writes_checkpoints_metrics_and_plot(tmp_path):
    _train(tmp_path, "epochs=2")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert all("val_mR" in json.loads(line) for line in lines)
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    config = json.loads((tmp_path / "best" / "adapter_config.json").read_text())
    assert config["epoch"] == summary["best_epoch"]
    assert config["backbone_identity"]["name"] == "tiny-vit"
    assert set(load_file(str(tmp_path / "best" / "adapter_model.safetensors"))) >= {"logit_scale"}


def _train_command(output_dir, *overrides):
    command = [sys.executable, "-m", "model.train"]
    for override in [*TINY_RUN, f"output_dir={output_dir}", *overrides]:
        command += ["--set", override]
    return command


# Every run of the comparison uses one thread in a fresh process, because the
# order of floating-point reductions depends on the thread count.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    long_run = ["epochs=3", "max_steps_per_epoch=30"]
    subprocess.run(_train_command(straight, *long_run), env=ONE_THREAD, check=True, capture_output=True, timeout=600)
    process = subprocess.Popen(_train_command(killed, *long_run), env=ONE_THREAD,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "last" / "training_state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()
    process.wait()
    finished = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert finished and finished[-1] < 2, "the run finished before it could be killed"
    subprocess.run(_train_command(killed, *long_run), env=ONE_THREAD, check=True, capture_output=True, timeout=600)
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    expected = load_file(str(straight / "last" / "adapter_model.safetensors"))
    actual = load_file(str(killed / "last" / "adapter_model.safetensors"))
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_checkpoint_round_trip_gives_equal_outputs(tmp_path):
    _train(tmp_path, "epochs=1")
    first = load_adapters(tmp_path / "best")
    second = load_adapters(tmp_path / "best")
    tokens = first.tokenizer(["a river next to a forest"])
    with torch.no_grad():
        assert torch.equal(first.encode_text(tokens), second.encode_text(tokens))
        bare = first.clip.encode_text(tokens)
    assert not torch.allclose(torch.nn.functional.normalize(bare, dim=-1), first.encode_text(tokens))


def test_checkpoint_for_another_backbone_is_rejected(tmp_path):
    _train(tmp_path, "epochs=1")
    config_path = tmp_path / "best" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["backbone_spec"]["model_name"] = "tiny-conv-bert"
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatch, match="tiny-vit"):
        load_adapters(tmp_path / "best")


def test_tampered_weights_are_rejected(tmp_path):
    _train(tmp_path, "epochs=1")
    weights = tmp_path / "best" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(CheckpointMismatch, match="SHA-256"):
        load_adapters(tmp_path / "best")


@pytest.mark.parametrize("override, message", [
    ("epochs=0", "epochs"), ("nonsense=1", "unknown training options"), ("precision=fp8", "precision"),
    ("harma.mms_towers=image", "mms_towers"),
])
def test_bad_training_options_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [override])


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\nlr: 0.001\nharma:\n  mms_towers: text\n")
    config = load_train_config(path, ["lr=0.002"])
    assert config.epochs == 7
    assert config.lr == 0.002
    assert config.harma.mms_towers == "text"
