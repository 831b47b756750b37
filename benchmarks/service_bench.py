"""Measure the service over loopback HTTP against in-process encode plus search.

Prints, for text and image queries: p50/p99 latency over HTTP and in process
and their ratio; throughput of bounded concurrent load with and without
micro-batching against the single-request rate; latency during a rebuild;
and the server's resident memory after the load.

Queries go through ``LoopbackClient``, a keep-alive ``http.client``
connection per client thread, because on a machine with few cores the
client shares them with the server, and httpx costs about 1 ms of CPU per
request. The in-process path does what a query does inside the server, minus HTTP:
decode (images), encode, FAISS search and the metadata lookups of the hits.
It runs in this process while the server idles, in blocks that alternate
with blocks of HTTP queries, so that both see the same background load.

Usage: python benchmarks/service_bench.py [--model tiny-vit] [--archive data/ucm_captions]
       [--requests 200] [--concurrency 4,8,16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import uuid
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


class LoopbackClient:
    """A minimal keep-alive HTTP/1.1 client for the query endpoints."""

    def __init__(self, port: int, timeout_s: float = 60.0):
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def post_json(self, path: str, payload: dict) -> tuple[int, bytes]:
        return self._post(path, json.dumps(payload).encode(), "application/json")

    def post_image(self, path: str, data: bytes, fields: dict[str, str]) -> tuple[int, bytes]:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                 for name, value in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self._post(path, b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        self._connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._connection.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class InProcess:
    """The encoder and snapshot used without HTTP, for the latency baseline."""

    def __init__(self, model: str, snapshot_root: Path):
        from index.snapshot import open_current_snapshot
        from model.encoder import load_encoder

        self.encoder = load_encoder(model, device="cpu")
        self.snapshot = open_current_snapshot(snapshot_root)

    def text_query(self, text: str, k: int = 10) -> list:
        vector = self.encoder.encode_texts([text])  # [1, dim]
        return [self.snapshot.get_image(image_id) for image_id, _ in self.snapshot.search_images(vector, k)[0]]

    def image_query(self, data: bytes, k: int = 10) -> tuple[list, list]:
        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGB")
        vector = self.encoder.encode_image_tensors(self.encoder.preprocess_image(image)[None])  # [1, dim]
        captions = []
        for caption_id, _ in self.snapshot.search_captions(vector, k)[0]:
            caption = self.snapshot.get_caption(caption_id)
            captions.append((caption, [self.snapshot.get_image(image_id) for image_id in caption.image_ids]))
        scenes = [self.snapshot.get_image(image_id) for image_id, _ in self.snapshot.search_images(vector, k)[0]]
        return captions, scenes

    def close(self) -> None:
        self.snapshot.close()


def timed_ms(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return (time.perf_counter() - started) * 1000


def interleaved_latency(local: InProcess, client: LoopbackClient, images: list[bytes], rounds: int,
                        per_block: int) -> dict:
    """Alternate blocks of in-process and HTTP queries; return their latencies in ms per path and modality."""
    def http_text(text: str) -> None:
        status, body = client.post_json("/v1/search/text", {"text": text, "k": 10})
        if status != 200:
            raise RuntimeError(f"text query failed with {status}: {body[:200]!r}")

    def http_image(data: bytes) -> None:
        status, body = client.post_image("/v1/search/image", data, {"k": "10"})
        if status != 200:
            raise RuntimeError(f"image query failed with {status}: {body[:200]!r}")

    paths = {"in process": (local.text_query, local.image_query), "HTTP": (http_text, http_image)}
    latencies = {(path, modality): [] for path in paths for modality in ("text", "image")}
    for _ in range(rounds):
        for path, (text_query, image_query) in paths.items():
            for number in range(per_block):
                latencies[path, "text"].append(timed_ms(text_query, TEXTS[number % len(TEXTS)]))
                latencies[path, "image"].append(timed_ms(image_query, images[number % len(images)]))
    return latencies


def throughput(port: int, concurrency: int, total: int, timeout_s: float = 300.0) -> tuple[float, int]:
    """Send ``total`` text queries from ``concurrency`` threads; return (queries/s, failures)."""
    counter = iter(range(total))
    lock = threading.Lock()
    failures = [0]
    deadline = time.monotonic() + timeout_s

    def worker() -> None:
        client = LoopbackClient(port)
        try:
            while time.monotonic() < deadline:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                status, _ = client.post_json("/v1/search/text", {"text": f"{TEXTS[number % 8]} {number}", "k": 10})
                if status != 200:
                    with lock:
                        failures[0] += 1
        finally:
            client.close()

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
    parser.add_argument("--concurrency", default="4,8,16",
                        help="comma-separated client thread counts of the throughput runs, compared with 1 client")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating blocks of the latency run (in process, HTTP) and of the throughput runs")
    args = parser.parse_args()
    concurrency = [int(value) for value in args.concurrency.split(",")]

    from index.build import BuildConfig, build_snapshot
    from model.encoder import load_encoder

    work = Path(tempfile.mkdtemp(prefix="service-bench-"))
    root = work / "snapshots"
    report = build_snapshot(BuildConfig(archive_dir=args.archive, snapshot_root=root, num_workers=0),
                            load_encoder(args.model, device="cpu"))
    images = [path.read_bytes() for path in sorted(args.archive.rglob("*.jpg"))[:: max(1, report.image_count // 16)]]
    local = InProcess(args.model, root)

    settings = {"model": args.model, "snapshot_dir": str(root), "archive_dir": str(args.archive),
                "admin_token": TOKEN, "build_workers": "0", "log_level": "WARNING"}
    results: dict = {"images": report.image_count, "captions": report.caption_count}
    for batching in ("16", "1"):
        server = ServerProcess({**settings, "batch_max_size": batching}, work / f"server-{batching}.log").start()
        try:
            with server.client() as http:
                throughput(server.port, 1, 20)  # warm-up
                # Rounds alternate the client counts, so that a slow spell of the machine
                # affects all of them alike; each count reports its median rate.
                samples: dict[int, list[tuple[float, int]]] = {clients: [] for clients in [1] + concurrency}
                per_run = max(1, args.requests // args.rounds)
                for _ in range(args.rounds):
                    for clients in samples:
                        samples[clients].append(throughput(server.port, clients, max(clients, per_run)))
                results[f"batch_max_size={batching}"] = {
                    clients: (statistics.median(rate for rate, _ in runs), sum(failed for _, failed in runs))
                    for clients, runs in samples.items()}
                if batching == "16":
                    client = LoopbackClient(server.port)
                    interleaved_latency(local, client, images, 1, 5)  # warm-up
                    latencies = interleaved_latency(local, client, images, args.rounds,
                                                    max(1, args.requests // args.rounds))
                    client.close()
                    for modality in ("text", "image"):
                        print(summary(f"{modality} in process", latencies["in process", modality]))
                        print(summary(f"{modality} over HTTP", latencies["HTTP", modality]))
                        ratio = (percentile(latencies["HTTP", modality], 50)
                                 / percentile(latencies["in process", modality], 50))
                        print(f"{modality} p50 ratio HTTP / in process: {ratio:.2f}")
                    rebuild = latency_during_rebuild(http)
                    print(summary("text during rebuild", rebuild["ms"]) + f", failures {rebuild['failures']}")
                    print(f"server RSS after load: {rss_mib(server.process.pid):.0f} MiB")
        finally:
            server.stop()
    local.close()
    for key, rates in results.items():
        if not isinstance(rates, dict):
            continue
        single = rates[1][0]
        for clients, (rate, failures) in rates.items():
            print(f"{key}: {clients} clients {rate:.1f} q/s ({rate / single:.2f}x one client), failures {failures}")
    print(json.dumps({"images": results["images"], "captions": results["captions"]}))


if __name__ == "__main__":
    main()
