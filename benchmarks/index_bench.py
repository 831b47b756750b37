"""Benchmarks of the index package: embedding throughput, search latency and recall, build cost.

Run from the repository root, for example::

    python benchmarks/index_bench.py throughput --archive data --max-images 512
    python benchmarks/index_bench.py search --sizes 10000 100000 1000000
    python benchmarks/index_bench.py build --archive data
    python benchmarks/index_bench.py memory --sizes 10000 100000 1000000

Search figures use synthetic vectors: unit vectors drawn around random
cluster centres (a Gaussian mixture), not real embeddings. Every figure is
printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_benchmark_encoder(source: str):
    """Load ``source``; ``untrained-default`` is the offline default backbone with new adapters.

    The untrained variant has the same architecture and cost as the shipped
    default, so it replaces the default in throughput figures before the trained
    weights exist.
    """
    from model.encoder import DEFAULT_CHECKPOINT, RetrievalEncoder, load_encoder

    if source == "default" and not DEFAULT_CHECKPOINT.is_dir():
        print(f"note: {DEFAULT_CHECKPOINT} is missing; using untrained-default")
        source = "untrained-default"
    if source == "untrained-default":
        from model.backbone import BackboneSpec, build_backbone
        from model.harma import HarMAModel

        return RetrievalEncoder(HarMAModel(build_backbone(BackboneSpec())), source="untrained-default")
    return load_encoder(source)


def machine() -> str:
    import os

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {load} at start"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


# ---------------------------------------------------------------- throughput

def bench_throughput(args: argparse.Namespace) -> None:
    import torch

    from index.decode import DecodeConfig, read_image_file
    from index.embed import EmbedOptions, EmbedTask, embed_files
    from index.scan import scan_archive
    from index.shards import ShardStore

    encoder = load_benchmark_encoder(args.model)
    files = scan_archive(Path(args.archive)).files[: args.max_images]
    decoded = [read_image_file(item.path, DecodeConfig()) for item in files]
    pixels = torch.stack([encoder.preprocess_image(item.image) for item in decoded])  # [images, 3, size, size]
    encoder.encode_image_tensors(pixels[: args.batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(pixels), args.batch_size):
        encoder.encode_image_tensors(pixels[start:start + args.batch_size])
    raw_rate = len(pixels) / (time.perf_counter() - started)

    tasks = [EmbedTask(item.path, image.sha256) for item, image in zip(files, decoded)]
    options = EmbedOptions(args.batch_size, args.workers, 1 << 30, DecodeConfig())
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        embed_files(tasks, encoder, ShardStore(Path(folder), encoder.embed_dim), options)
        pipeline_rate = len(tasks) / (time.perf_counter() - started)
    print(f"model {encoder.source}, image size {encoder.image_size}, {len(tasks)} images, batch {args.batch_size}, "
          f"{args.workers} workers, torch threads {torch.get_num_threads()}")
    print(f"raw encoder forward: {raw_rate:.1f} images/s")
    print(f"pipeline (read, decode, resize, encode): {pipeline_rate:.1f} images/s")
    print(f"ratio pipeline / raw: {pipeline_rate / raw_rate:.2f}")


# ---------------------------------------------------------------- search

def synthetic_unit_vectors(count: int, dim: int, seed: int, clusters: int, spread: float) -> np.ndarray:
    """Return ``[count, dim]`` float32 unit vectors around ``clusters`` random unit centres.

    Noise of norm about ``spread`` is added to a centre before normalising,
    so two members of one cluster have cosine about 1 / (1 + spread**2)
    while unrelated vectors have cosine 0 with standard deviation 1 / sqrt(dim).
    """
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):  # chunks keep the temporary arrays small
        size = min(100_000, count - start)
        noise = rng.standard_normal((size, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        chunk = centres[rng.integers(0, clusters, size)] + noise
        out[start:start + size] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def time_queries(index, queries: np.ndarray, params, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Search one query at a time; return per-query milliseconds and the labels."""
    latencies, labels = [], []
    deadline = time.perf_counter() + max_seconds
    for query in queries:
        started = time.perf_counter()
        _, found = index.search(query[np.newaxis, :], 10, params=params)
        latencies.append((time.perf_counter() - started) * 1000.0)
        labels.append(found[0])
        if time.perf_counter() > deadline:
            break
    return np.array(latencies), np.array(labels)


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10.0 for a, b in zip(found, exact)]))


def bench_search(args: argparse.Namespace) -> None:
    import faiss

    from index.faiss_index import IndexSettings, build_faiss_index, resolve_params, search_parameters

    print(f"SYNTHETIC data: unit vectors in clusters of about {args.cluster_size}, spread {args.spread}, "
          f"dimension {args.dim}, "
          f"{args.queries} queries, "
          f"one query per search call, FAISS {faiss.__version__} with {args.threads} OpenMP thread(s)")
    faiss.omp_set_num_threads(args.threads)
    for count in args.sizes:
        clusters = max(16, count // args.cluster_size)
        base = synthetic_unit_vectors(count, args.dim, seed=count, clusters=clusters, spread=args.spread)
        queries = synthetic_unit_vectors(args.queries, args.dim, seed=1, clusters=clusters, spread=args.spread)
        exact_index = faiss.IndexFlatIP(args.dim)
        exact_index.add(base)
        faiss.omp_set_num_threads(0 if args.threads == 1 else args.threads)
        _, exact = exact_index.search(queries, 10)  # batched ground truth
        faiss.omp_set_num_threads(args.threads)
        flat_ms, _ = time_queries(exact_index, queries, None, args.max_seconds)
        print(f"n={count:>8}  flat  p50 {np.percentile(flat_ms, 50):7.3f} ms  p99 {np.percentile(flat_ms, 99):7.3f} ms"
              f"  recall@10 1.000 ({len(flat_ms)} queries)")
        del exact_index
        settings = IndexSettings(index_type="ivf", ivf_nlist=args.nlist)
        params = resolve_params(count, args.dim, settings)
        started = time.perf_counter()
        index = build_faiss_index(base, params)
        build_s = time.perf_counter() - started
        for nprobe in args.nprobe:
            ms, found = time_queries(index, queries, search_parameters(params, nprobe=nprobe), args.max_seconds)
            print(f"n={count:>8}  ivf nlist={params.nlist} nprobe={nprobe:<4} p50 {np.percentile(ms, 50):7.3f} ms  "
                  f"p99 {np.percentile(ms, 99):7.3f} ms  recall@10 {recall_at_10(found, exact[:len(found)]):.3f}")
        print(f"n={count:>8}  ivf build (train + add) {build_s:.1f} s, peak RSS so far {peak_rss_mib():.0f} MiB")
        del index
        if args.hnsw_ef and count <= args.hnsw_max:
            bench_hnsw(base, queries, exact, args)
        del base


def bench_hnsw(base: np.ndarray, queries: np.ndarray, exact: np.ndarray, args: argparse.Namespace) -> None:
    from index.faiss_index import IndexSettings, build_faiss_index, resolve_params, search_parameters

    params = resolve_params(len(base), args.dim, IndexSettings(index_type="hnsw"))
    started = time.perf_counter()
    index = build_faiss_index(base, params)
    build_s = time.perf_counter() - started
    for ef_search in args.hnsw_ef:
        ms, found = time_queries(index, queries, search_parameters(params, ef_search=ef_search), args.max_seconds)
        print(f"n={len(base):>8}  hnsw M={params.hnsw_m} efSearch={ef_search:<4} p50 {np.percentile(ms, 50):7.3f} ms  "
              f"p99 {np.percentile(ms, 99):7.3f} ms  recall@10 {recall_at_10(found, exact[:len(found)]):.3f}")
    print(f"n={len(base):>8}  hnsw build {build_s:.1f} s, peak RSS so far {peak_rss_mib():.0f} MiB")


# ---------------------------------------------------------------- memory

MEMORY_CHILD_QUERIES = 200


def bench_memory(args: argparse.Namespace) -> None:
    """Write each index type to disk, then measure the RSS of a fresh process that loads and searches it."""
    import faiss

    from index.faiss_index import IndexSettings, resolve_params
    from index.ivf_files import write_index_files

    print(f"SYNTHETIC data: unit vectors in clusters of about {args.cluster_size}, spread {args.spread}, "
          f"dimension {args.dim}; RSS of a fresh process after faiss.read_index and after "
          f"{MEMORY_CHILD_QUERIES} searches (k=10, default nprobe / efSearch), minus its RSS before loading; "
          "anonymous: the part not backed by a file, which the kernel cannot evict")
    faiss.omp_set_num_threads(args.threads)
    for count in args.sizes:
        clusters = max(16, count // args.cluster_size)
        base = synthetic_unit_vectors(count, args.dim, seed=count, clusters=clusters, spread=args.spread)
        print(f"n={count:>8}  raw vectors {base.nbytes / 2**20:8.1f} MiB")
        for index_type in args.types:
            if index_type == "hnsw" and count > args.hnsw_max:
                print(f"n={count:>8}  {index_type:<10}  not built: n > --hnsw-max {args.hnsw_max}")
                continue
            params = resolve_params(count, args.dim, IndexSettings(index_type=index_type))
            with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
                started = time.perf_counter()
                write_index_files(Path(folder), "images", base, params)
                build_s = time.perf_counter() - started
                disk_mib = sum(path.stat().st_size for path in Path(folder).iterdir()) / 2**20
                child = subprocess.run(
                    [sys.executable, __file__, "_memory-child", "--folder", folder, "--type", index_type,
                     "--count", str(count), "--dim", str(args.dim), "--cluster-size", str(args.cluster_size),
                     "--spread", str(args.spread)], check=True, capture_output=True, text=True)
            figures = [float(value) for value in child.stdout.splitlines()[-1].split()]  # FAISS may print before
            loaded, searched, anonymous, latency = figures
            print(f"n={count:>8}  {index_type:<10}  files {disk_mib:7.1f} MiB  RSS loaded {loaded:7.1f} MiB  "
                  f"after searches {searched:7.1f} MiB (anonymous {anonymous:7.1f} MiB)  p50 {latency:.3f} ms  "
                  f"build {build_s:.1f} s")
        del base


def memory_child(args: argparse.Namespace) -> None:
    """Load one index and print RSS growth in MiB (after loading, after searches, anonymous part) and p50 ms."""
    import faiss

    from index.faiss_index import IndexSettings, resolve_params, search_parameters
    from index.ivf_files import read_index_file

    faiss.omp_set_num_threads(1)
    clusters = max(16, args.count // args.cluster_size)
    queries = synthetic_unit_vectors(MEMORY_CHILD_QUERIES, args.dim, seed=1, clusters=clusters, spread=args.spread)
    params = resolve_params(args.count, args.dim, IndexSettings(index_type=args.type))
    before, anonymous_before = current_rss_mib(), current_rss_mib("RssAnon")
    index = read_index_file(Path(args.folder), "images", params)
    loaded = current_rss_mib() - before
    latencies, _ = time_queries(index, queries, search_parameters(params), max_seconds=60.0)
    searched = current_rss_mib() - before
    # File-backed pages (page cache of memory-mapped files) can be evicted under
    # memory pressure; anonymous pages (heap) cannot.
    anonymous = current_rss_mib("RssAnon") - anonymous_before
    print(f"{loaded:.1f} {searched:.1f} {anonymous:.1f} {np.percentile(latencies, 50):.4f}")


def current_rss_mib(field: str = "VmRSS") -> float:
    """Return one resident-memory field of /proc/self/status in MiB (Linux only)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0  # the kernel reports kB
    raise RuntimeError(f"{field} not found in /proc/self/status")


# ---------------------------------------------------------------- build

def bench_build(args: argparse.Namespace) -> None:
    """Run one full build in a child process so its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "_build-child", "--archive", args.archive, "--root", folder,
                   "--model", args.model, "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
        subprocess.run(command, check=True)


def build_child(args: argparse.Namespace) -> None:
    from index.build import BuildConfig, build_snapshot

    encoder = load_benchmark_encoder(args.model)
    config = BuildConfig(archive_dir=Path(args.archive), snapshot_root=Path(args.root),
                         batch_size=args.batch_size, num_workers=args.workers)
    started = time.perf_counter()
    report = build_snapshot(config, encoder)
    seconds = time.perf_counter() - started
    print(f"model {encoder.source}: {report.image_count} images, {report.caption_count} captions, "
          f"{len(report.skipped)} skipped, build {seconds:.1f} s ({report.image_count / seconds:.1f} images/s)")
    print(f"peak RSS: main process {peak_rss_mib():.0f} MiB, largest worker {peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("throughput", "build", "_build-child"):
        sub = commands.add_parser(name)
        sub.add_argument("--archive", default=str(REPO / "data"), help="image folder (default data/)")
        sub.add_argument("--model", default="default", help="load_encoder source or untrained-default")
        sub.add_argument("--batch-size", type=int, default=32)
        sub.add_argument("--workers", type=int, default=2)
        sub.add_argument("--max-images", type=int, default=512, help="images used by throughput (default 512)")
        sub.add_argument("--root", help=argparse.SUPPRESS)
    search = commands.add_parser("search")
    search.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    search.add_argument("--dim", type=int, default=256, help="vector dimension (default 256, the default model's)")
    search.add_argument("--queries", type=int, default=1000)
    search.add_argument("--cluster-size", type=int, default=100, help="mean vectors per synthetic cluster")
    search.add_argument("--spread", type=float, default=1.0,
                        help="noise norm around a cluster centre; same-cluster cosine is about 1 / (1 + spread**2)")
    search.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4 * sqrt(n))")
    search.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    search.add_argument("--hnsw-ef", type=int, nargs="*", default=[],
                        help="also build HNSW and search with these efSearch values")
    search.add_argument("--hnsw-max", type=int, default=100_000, help="largest n that gets an HNSW index")
    search.add_argument("--threads", type=int, default=1, help="OpenMP threads per search call (default 1)")
    search.add_argument("--max-seconds", type=float, default=30.0, help="time limit per latency loop")
    memory = commands.add_parser("memory")
    memory.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    memory.add_argument("--types", nargs="+", default=["flat", "ivf", "hnsw", "ivf-ondisk"],
                        choices=["flat", "ivf", "hnsw", "ivf-ondisk"])
    memory.add_argument("--dim", type=int, default=256, help="vector dimension (default 256, the default model's)")
    memory.add_argument("--cluster-size", type=int, default=100, help="mean vectors per synthetic cluster")
    memory.add_argument("--spread", type=float, default=1.0, help="noise norm around a cluster centre")
    memory.add_argument("--hnsw-max", type=int, default=100_000, help="largest n that gets an HNSW index")
    memory.add_argument("--threads", type=int, default=1, help="OpenMP threads for building (default 1)")
    memory.add_argument("--tmp", default=None, help="folder for the index files (default: the system temp folder)")
    child = commands.add_parser("_memory-child")
    child.add_argument("--folder")
    child.add_argument("--type")
    for name in ("--count", "--dim", "--cluster-size"):
        child.add_argument(name, type=int)
    child.add_argument("--spread", type=float)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    if args.command == "_memory-child":
        memory_child(args)  # prints only its figures for the parent to parse
        return
    print(f"machine: {machine()}, python {platform.python_version()}")
    {"throughput": bench_throughput, "search": bench_search, "build": bench_build,
     "_build-child": build_child, "memory": bench_memory}[args.command](args)


if __name__ == "__main__":
    main()
