"""Measure the service over loopback HTTP against in-process encode plus search.

Prints, for text and image queries: p50/p99 latency over HTTP and in process
and their ratio; throughput of bounded concurrent load with and without
micro-batching against the single-request rate; latency during a rebuild;
and the server's resident memory after the load.

Usage: python benchmarks/service_bench.py [--model tiny-vit] [--archive data/ucm_captions]
       [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.service.server import ServerProcess  # noqa: E402

TOKEN = "bench-token"
TEXTS = ["many boats in a harbor", "a dense residential area", "a runway with an airplane",
         "green farmland", "a river through a forest", "storage tanks", "a baseball field", "a beach"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def in_process_latency(model: str, snapshot_root: Path, images: list[bytes], rounds: int) -> dict:
    from PIL import Image

    from index.snapshot import open_current_snapshot
    from model.encoder import load_encoder

    encoder = load_encoder(model, device="cpu")
    snapshot = open_current_snapshot(snapshot_root)
    text_ms, image_ms = [], []
    for number in range(rounds):
        started = time.perf_counter()
        vector = encoder.encode_texts([TEXTS[number % len(TEXTS)]])
        snapshot.search_images(vector, 10)
        text_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        image = Image.open(io.BytesIO(images[number % len(images)])).convert("RGB")
        vector = encoder.encode_image_tensors(encoder.preprocess_image(image)[None])
        snapshot.search_captions(vector, 10)
        snapshot.search_images(vector, 10)
        image_ms.append((time.perf_counter() - started) * 1000)
    snapshot.close()
    return {"text": text_ms, "image": image_ms}


def http_latency(http: httpx.Client, images: list[bytes], rounds: int) -> dict:
    text_ms, image_ms = [], []
    for number in range(rounds):
        started = time.perf_counter()
        http.post("/v1/search/text", json={"text": TEXTS[number % len(TEXTS)], "k": 10}).raise_for_status()
        text_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        http.post("/v1/search/image", files={"file": ("q.jpg", images[number % len(images)], "image/jpeg")},
                  data={"k": "10"}).raise_for_status()
        image_ms.append((time.perf_counter() - started) * 1000)
    return {"text": text_ms, "image": image_ms}


def throughput(base_url: str, concurrency: int, total: int, timeout_s: float = 300.0) -> tuple[float, int]:
    """Send ``total`` text queries from ``concurrency`` threads; return (queries/s, failures)."""
    counter = iter(range(total))
    lock = threading.Lock()
    failures = [0]
    deadline = time.monotonic() + timeout_s

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                response = http.post("/v1/search/text", json={"text": f"{TEXTS[number % 8]} {number}", "k": 10})
                if response.status_code != 200:
                    failures[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return total / (time.perf_counter() - started), failures[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency_during_rebuild(http: httpx.Client, max_queries: int = 2000) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    job_id = http.post("/v1/admin/index/rebuild", headers=headers).json()["job_id"]
    latencies, failures = [], 0
    for number in range(max_queries):
        started = time.perf_counter()
        response = http.post("/v1/search/text", json={"text": TEXTS[number % 8], "k": 10})
        latencies.append((time.perf_counter() - started) * 1000)
        failures += response.status_code != 200
        if number % 10 == 0 and http.get(f"/v1/admin/jobs/{job_id}", headers=headers).json()["state"] != "running":
            break
    return {"ms": latencies, "failures": failures}


def summary(name: str, values: list[float]) -> str:
    return f"{name}: p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-vit", help="encoder source (default tiny-vit)")
    parser.add_argument("--archive", type=Path, default=REPO_ROOT / "data" / "ucm_captions",
                        help="archive to index (default data/ucm_captions)")
    parser.add_argument("--requests", type=int, default=200, help="queries per latency and throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads of the throughput runs")
    args = parser.parse_args()

    from index.build import BuildConfig, build_snapshot
    from model.encoder import load_encoder

    work = Path(tempfile.mkdtemp(prefix="service-bench-"))
    root = work / "snapshots"
    report = build_snapshot(BuildConfig(archive_dir=args.archive, snapshot_root=root, num_workers=0),
                            load_encoder(args.model, device="cpu"))
    images = [path.read_bytes() for path in sorted(args.archive.rglob("*.jpg"))[:: max(1, report.image_count // 16)]]
    rounds = args.requests // 2
    local = in_process_latency(args.model, root, images, rounds)

    settings = {"model": args.model, "snapshot_dir": str(root), "archive_dir": str(args.archive),
                "admin_token": TOKEN, "build_workers": "0", "log_level": "WARNING"}
    results: dict = {"images": report.image_count, "captions": report.caption_count}
    for batching in ("16", "1"):
        server = ServerProcess({**settings, "batch_max_size": batching}, work / f"server-{batching}.log").start()
        try:
            with server.client() as http:
                http_latency(http, images, 5)  # warm-up
                remote = http_latency(http, images, rounds)
                single, _ = throughput(server.base_url, 1, args.requests)
                concurrent, failed = throughput(server.base_url, args.concurrency, args.requests)
                results[f"batch_max_size={batching}"] = {"single_qps": single, "concurrent_qps": concurrent,
                                                         "failures": failed}
                if batching == "16":
                    for modality in ("text", "image"):
                        print(summary(f"{modality} in process", local[modality]))
                        print(summary(f"{modality} over HTTP", remote[modality]))
                        ratio = percentile(remote[modality], 50) / percentile(local[modality], 50)
                        print(f"{modality} p50 ratio HTTP / in process: {ratio:.2f}")
                    rebuild = latency_during_rebuild(http)
                    print(summary("text during rebuild", rebuild["ms"]) + f", failures {rebuild['failures']}")
                    print(f"server RSS after load: {rss_mib(server.process.pid):.0f} MiB")
        finally:
            server.stop()
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key}: 1 client {value['single_qps']:.1f} q/s, {args.concurrency} clients "
                  f"{value['concurrent_qps']:.1f} q/s ({value['concurrent_qps'] / value['single_qps']:.2f}x), "
                  f"failures {value['failures']}")
    print(json.dumps({"images": results["images"], "captions": results["captions"]}))


if __name__ == "__main__":
    main()
