"""Command line for building, updating, inspecting and querying snapshots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from index.errors import IndexPackageError

DESCRIPTION = """Build and query FAISS index snapshots of an image archive.

  build   embed the whole archive and caption files, publish a new snapshot
  update  re-embed only new or changed images (by SHA-256), publish a new snapshot
  info    print the manifest of the current snapshot
  query   print ranked hits for a text or an image file (for debugging)
"""


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", type=Path, required=True, help="image archive folder, walked recursively")
    parser.add_argument("--captions", type=Path, action="append", default=[],
                        help="caption file (.json annotation, .jsonl or .txt); repeat for several")
    parser.add_argument("--batch-size", type=int, default=32, help="images per encoder batch (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decode workers (default 2)")
    parser.add_argument("--index-type", choices=("auto", "flat", "ivf", "hnsw"), default="auto",
                        help="auto: exact up to --exact-max vectors, IVF beyond (default auto)")
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
