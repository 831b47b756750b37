"""Command line for building, updating, inspecting and querying snapshots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from index.errors import IndexPackageError
from index.faiss_index import INDEX_TYPES

DESCRIPTION = """Build and query FAISS index snapshots of an image archive.

  build   embed the whole archive and caption files, publish a new snapshot
  update  re-embed only new or changed images (by SHA-256), publish a new snapshot
  info    print the manifest of the current snapshot
  query   print ranked hits for a text or an image file (for debugging)

Sharded embedding over many workers (SLURM arrays, Kubernetes indexed jobs,
torchrun ranks):

  embed-shard  embed one shard of the archive into a shared work folder
  merge        build and publish a snapshot from all shards in a work folder
"""


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", type=Path, required=True, help="image archive folder, walked recursively")
    _add_embed_arguments(parser)
    _add_index_arguments(parser)


def _add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="images per encoder batch (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decode workers (default 2)")


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--captions", type=Path, action="append", default=[],
                        help="caption file (.json annotation, .jsonl or .txt); repeat for several")
    parser.add_argument("--index-type", choices=INDEX_TYPES, default="auto",
                        help="auto: exact up to --exact-max vectors, IVF beyond; ivf-ondisk: IVF with "
                             "memory-mapped lists for indexes larger than RAM (default auto)")
    parser.add_argument("--exact-max", type=int, default=200_000,
                        help="largest count indexed exactly when --index-type is auto (default 200000)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4 * sqrt(count))")
    parser.add_argument("--nprobe", type=int, default=None, help="default IVF lists probed per query (default max(32, nlist / 64))")
    parser.add_argument("--keep", type=int, default=3, help="published snapshots kept on disk (default 3)")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--snapshots", type=Path, default=Path("var/index"),
                        help="snapshot root folder (default var/index)")
    common.add_argument("--model", default="default",
                        help="encoder: 'default', 'tiny-vit', 'tiny-conv-bert' or a checkpoint folder (default default)")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harma-index", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = _common_options()
    commands = parser.add_subparsers(dest="command", required=True)
    _add_build_arguments(commands.add_parser("build", parents=[common], help="build a snapshot of the whole archive"))
    _add_build_arguments(commands.add_parser("update", parents=[common], help="incrementally update the current snapshot"))
    _add_shard_parsers(commands, common)
    commands.add_parser("info", parents=[common], help="print the current snapshot's manifest")
    query = commands.add_parser("query", parents=[common], help="print ranked hits for a text or an image")
    source = query.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="query caption")
    source.add_argument("--image", type=Path, help="query image file")
    query.add_argument("-k", type=int, default=10, help="hits to print (default 10)")
    query.add_argument("--target", choices=("images", "captions"), default=None,
                       help="what to search (default: images for --text, captions for --image)")
    query.add_argument("--nprobe", type=int, default=None, help="IVF lists probed for this query")
    query.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch for this query")
    return parser


def _add_shard_parsers(commands, common: argparse.ArgumentParser) -> None:
    shard = commands.add_parser(
        "embed-shard", parents=[common], help="embed one shard of the archive into a work folder",
        description="Embed the files of one shard. Without --shard and --num-shards the shard is the torchrun "
                    "rank (RANK of WORLD_SIZE). A SLURM array task passes --shard $SLURM_ARRAY_TASK_ID, a "
                    "Kubernetes indexed job --shard $JOB_COMPLETION_INDEX.")
    shard.add_argument("--archive", type=Path, required=True, help="image archive folder, walked recursively")
    shard.add_argument("--work", type=Path, required=True, help="shared work folder that receives the shard output")
    shard.add_argument("--shard", type=int, default=None, help="this worker's shard index, 0 .. num-shards - 1")
    shard.add_argument("--num-shards", type=int, default=None, help="total number of shards")
    _add_embed_arguments(shard)
    merge = commands.add_parser("merge", parents=[common], help="publish a snapshot built from all shards",
                                description="Build a snapshot from every shard in --work and publish it under "
                                            "--snapshots. Fails, naming them, when shards are missing.")
    merge.add_argument("--work", type=Path, required=True, help="work folder that the shards wrote to")
    merge.add_argument("--num-shards", type=int, default=None,
                       help="shard count of the run (default: read from the shard folder names)")
    merge.add_argument("--archive", type=Path, default=None,
                       help="archive folder to read annotation files from and record in the snapshot "
                            "(default: the one the shards recorded)")
    merge.add_argument("--remove-shards", action="store_true", help="delete the shard folders after publishing")
    _add_index_arguments(merge)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FAISS logs every CPU-feature probe at INFO; only its warnings matter here.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    from model.errors import HarMAError

    try:
        if args.command == "info":
            return _info(args)
        if args.command == "query":
            return _query(args)
        if args.command == "embed-shard":
            return _embed_shard(args)
        if args.command == "merge":
            return _merge(args)
        return _build(args)
    except (IndexPackageError, HarMAError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace) -> int:
    from index.build import BuildConfig, build_snapshot, update_snapshot
    from model.encoder import load_encoder

    config = BuildConfig(archive_dir=args.archive, snapshot_root=args.snapshots, caption_files=args.captions,
                         batch_size=args.batch_size, num_workers=args.workers, index_type=args.index_type,
                         exact_max=args.exact_max, ivf_nlist=args.nlist, ivf_nprobe=args.nprobe,
                         keep_snapshots=args.keep)
    run = build_snapshot if args.command == "build" else update_snapshot
    report = run(config, load_encoder(args.model))
    print(f"published {report.version}: {report.image_count} images ({report.embedded} embedded, "
          f"{report.reused} reused), {report.caption_count} captions, {len(report.skipped)} skipped, "
          f"{report.seconds:.1f} s")
    print(f"path: {report.path}")
    for relative_path, reason in report.skipped:
        print(f"skipped {relative_path}: {reason}")
    return 0


def _embed_shard(args: argparse.Namespace) -> int:
    from index.sharded import ShardJobConfig, embed_shard, resolve_shard_spec
    from model.encoder import load_encoder

    spec = resolve_shard_spec(args.shard, args.num_shards)
    config = ShardJobConfig(archive_dir=args.archive, work_dir=args.work, batch_size=args.batch_size,
                            num_workers=args.workers)
    report = embed_shard(config, load_encoder(args.model, device=_rank_device()), spec)
    print(f"shard {spec.index} of {spec.count}: {report.file_count} files ({report.embedded} embedded, "
          f"{report.reused} reused), {len(report.skipped)} skipped, {report.seconds:.1f} s")
    print(f"path: {report.path}")
    return 0


def _rank_device() -> Optional[str]:
    """Return ``cuda:<LOCAL_RANK>`` under torchrun on a GPU machine, so local ranks use separate GPUs."""
    import os

    import torch

    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or not torch.cuda.is_available():
        return None
    return f"cuda:{int(local_rank) % torch.cuda.device_count()}"


def _merge(args: argparse.Namespace) -> int:
    from index.merge import MergeConfig, merge_shards
    from model.encoder import load_encoder

    config = MergeConfig(work_dir=args.work, snapshot_root=args.snapshots, num_shards=args.num_shards,
                         archive_dir=args.archive, caption_files=args.captions, exact_max=args.exact_max,
                         index_type=args.index_type, ivf_nlist=args.nlist, ivf_nprobe=args.nprobe,
                         keep_snapshots=args.keep, remove_shards=args.remove_shards)
    report = merge_shards(config, load_encoder(args.model))
    print(f"published {report.version}: {report.image_count} images from {report.embedded} embedded contents, "
          f"{report.caption_count} captions, {len(report.skipped)} skipped, {report.seconds:.1f} s")
    print(f"path: {report.path}")
    for relative_path, reason in report.skipped:
        print(f"skipped {relative_path}: {reason}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from index.snapshot import open_current_snapshot

    with open_current_snapshot(args.snapshots) as snapshot:
        print(f"path: {snapshot.path}")
        print(json.dumps(snapshot.manifest, indent=2, sort_keys=True))
    return 0


def _query(args: argparse.Namespace) -> int:
    from index.snapshot import open_current_snapshot
    from model.encoder import load_encoder

    encoder = load_encoder(args.model)
    with open_current_snapshot(args.snapshots, encoder_fingerprint=encoder.fingerprint,
                               embed_dim=encoder.embed_dim) as snapshot:
        if args.text is not None:
            vector = encoder.encode_texts([args.text])  # [1, dim]
        else:
            vector = encoder.encode_images([_open_query_image(args.image)])  # [1, dim]
        target = args.target or ("images" if args.text is not None else "captions")
        if target == "images":
            hits = snapshot.search_images(vector, args.k, nprobe=args.nprobe, ef_search=args.ef_search)[0]
            for rank, (image_id, score) in enumerate(hits, start=1):
                record = snapshot.get_image(image_id)
                print(f"{rank:3d}  {score:.4f}  {image_id}  {record.path}  label={record.label}")
        else:
            hits = snapshot.search_captions(vector, args.k, nprobe=args.nprobe, ef_search=args.ef_search)[0]
            for rank, (caption_id, score) in enumerate(hits, start=1):
                print(f"{rank:3d}  {score:.4f}  {caption_id}  {snapshot.get_caption(caption_id).text}")
    return 0


def _open_query_image(path: Path):
    from index.decode import DecodeConfig, DecodeError, read_image_file

    try:
        return read_image_file(path, DecodeConfig()).image
    except DecodeError as error:
        raise IndexPackageError(f"query image {path} cannot be used: {error}") from error
