"""Training and inference cost of HarMA adapters against full fine-tuning and the bare backbone.

Each configuration runs in a fresh child process, so that its peak resident
memory (ru_maxrss) is its own. Reported per configuration:

* train: median seconds per optimizer step (forward, loss, backward, AdamW)
  and the peak RSS growth over the RSS after the model is built;
* infer: median seconds to encode one batch of images and captions, with the
  bare backbone and with adapters timed in one process, alternating batch by
  batch. Both paths get captions without padding columns (MiniLM's pad id is 0).

Training runs ``--repeats`` times per configuration, adapters and full
fine-tuning in alternation, and each ratio is the median over the pairs.

Usage::

    python benchmarks/model_bench.py --batch-size 32 --steps 5 --repeats 3
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

CONFIGS = ("train-adapters", "train-full", "infer")
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


def _infer_steps(batch: int, steps: int) -> dict:
    """Time both inference paths in one process, alternating batch by batch.

    Alternating exposes both paths to the same background load, so the ratio
    is steadier than one taken between two separate processes.
    """
    from model.backbone import BackboneSpec, build_backbone
    from model.harma import HarMAModel

    bare = build_backbone(BackboneSpec())
    adapted = HarMAModel(build_backbone(BackboneSpec()))
    images = torch.randn(batch, 3, bare.image_size, bare.image_size)
    tokens = _trimmed(bare.tokenizer([CAPTION] * batch))
    encoders = {"infer-bare": bare.model, "infer-adapters": adapted}
    times: dict[str, list[float]] = {name: [] for name in encoders}
    with torch.inference_mode():
        for step in range(steps + 1):
            for name, encoder in encoders.items():
                start = time.perf_counter()
                encoder.encode_image(images)
                encoder.encode_text(tokens)
                if step:  # the first round warms up and is not timed
                    times[name].append(time.perf_counter() - start)
    pairs = [a / b for a, b in zip(times["infer-adapters"], times["infer-bare"])]
    return {"config": "infer", "bare_batch_s": statistics.median(times["infer-bare"]),
            "adapters_batch_s": statistics.median(times["infer-adapters"]),
            "ratio_median_of_pairs": statistics.median(pairs)}


def _child(config: str, batch: int, steps: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    result = _train_steps(config, batch, steps) if config.startswith("train") else _infer_steps(batch, steps)
    print(json.dumps(result))


def _run_child(config: str, batch: int, steps: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", config, "--batch-size", str(batch),
                             "--steps", str(steps)], check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="images and captions per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--repeats", type=int, default=3,
                        help="training processes per configuration, run in alternation; medians are reported")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.batch_size, args.steps)
        return
    runs: dict[str, list[dict]] = {"train-adapters": [], "train-full": []}
    for _ in range(args.repeats):
        for config in runs:
            runs[config].append(_run_child(config, args.batch_size, args.steps))
    infer = _run_child("infer", args.batch_size, args.steps)

    def ratios(key: str) -> list[float]:
        return [adapters[key] / full[key] for adapters, full in zip(runs["train-adapters"], runs["train-full"])]

    targets = (("step_s", "train step time", 0.6), ("peak_rss_growth_mib", "train peak memory growth", 0.5))
    for key, name, target in targets:
        values = ratios(key)
        print(f"{name}, adapters / full fine-tuning: median {statistics.median(values):.2f} "
              f"(runs: {', '.join(f'{value:.2f}' for value in values)}; target <= {target})")
    print(f"inference time, adapters / bare backbone: {infer['adapters_batch_s'] / infer['bare_batch_s']:.2f} "
          f"(median of per-batch ratios {infer['ratio_median_of_pairs']:.2f}; target <= 1.15)")


if __name__ == "__main__":
    main()
