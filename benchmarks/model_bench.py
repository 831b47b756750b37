"""Training and inference cost of HarMA adapters against full fine-tuning and the bare backbone.

Each configuration runs in a fresh child process, so that its peak resident
memory (ru_maxrss) is its own. Reported per configuration:

* train: median seconds per optimizer step (forward, loss, backward, AdamW)
  and the peak RSS growth over the RSS after the model is built;
* infer: median seconds to encode one batch of images and captions. Both
  inference paths get captions without padding columns (MiniLM's pad id is 0).

Usage::

    python benchmarks/model_bench.py --batch-size 32 --steps 5
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time

import torch

CONFIGS = ("train-adapters", "train-full", "infer-adapters", "infer-bare")
CAPTION = "many buildings and green trees are around a parking lot with some cars"


def _rss_mib() -> float:
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build(config: str):
    from model.backbone import BackboneSpec, build_backbone
    from model.harma import HarMAModel

    backbone = build_backbone(BackboneSpec())
    if config.endswith("bare"):
        return None, backbone
    model = HarMAModel(backbone, use_adapters=config != "train-full")
    if config == "train-full":
        # Full fine-tuning: every backbone weight trains, and there are no adapters.
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    return model, backbone


def _train_steps(config: str, batch: int, steps: int) -> dict:
    from model.config import LossConfig
    from model.losses import HarMALoss

    model, backbone = _build(config)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    loss_fn = HarMALoss(LossConfig())
    images = torch.randn(batch, 3, model.image_size, model.image_size)
    tokens = backbone.tokenizer([CAPTION] * batch)
    ids = torch.arange(batch)
    model.train()
    baseline = _rss_mib()
    times = []
    for step in range(steps + 1):  # the first step warms up and is not timed
        start = time.perf_counter()
        image_features, text_features = model(images, tokens)
        loss = loss_fn(image_features, text_features, ids, model.scale()).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return {"config": config, "trainable": sum(p.numel() for p in parameters),
            "step_s": statistics.median(times), "peak_rss_growth_mib": _peak_rss_mib() - baseline}


def _trimmed(tokens: torch.Tensor) -> torch.Tensor:
    """Drop padding columns, as HarMAModel does, so both inference paths encode the same input."""
    used = (tokens != 0).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1]


def _infer_steps(config: str, batch: int, steps: int) -> dict:
    model, backbone = _build(config)
    encoder = model if model is not None else backbone.model
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size)
    tokens = _trimmed(backbone.tokenizer([CAPTION] * batch))
    times = []
    with torch.inference_mode():
        for step in range(steps + 1):
            start = time.perf_counter()
            encoder.encode_image(images)
            encoder.encode_text(tokens)
            if step:
                times.append(time.perf_counter() - start)
    return {"config": config, "batch_s": statistics.median(times)}


def _child(config: str, batch: int, steps: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    result = _train_steps(config, batch, steps) if config.startswith("train") else _infer_steps(config, batch, steps)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="images and captions per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.batch_size, args.steps)
        return
    results = {}
    for config in CONFIGS:
        output = subprocess.run([sys.executable, __file__, "--child", config, "--batch-size", str(args.batch_size),
                                 "--steps", str(args.steps)], check=True, capture_output=True, text=True).stdout
        results[config] = json.loads(output.strip().splitlines()[-1])
        print(json.dumps(results[config]), flush=True)
    adapters, full = results["train-adapters"], results["train-full"]
    print(f"train step time, adapters / full fine-tuning: {adapters['step_s'] / full['step_s']:.2f} (target <= 0.6)")
    print(f"train peak memory growth, adapters / full fine-tuning: "
          f"{adapters['peak_rss_growth_mib'] / full['peak_rss_growth_mib']:.2f} (target <= 0.5)")
    ratio = results["infer-adapters"]["batch_s"] / results["infer-bare"]["batch_s"]
    print(f"inference time, adapters / bare backbone: {ratio:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
