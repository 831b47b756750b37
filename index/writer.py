"""Write a complete snapshot folder into a staging folder."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import faiss
import numpy as np

from index.decode import DecodeConfig
from index.faiss_index import IndexSettings, resolve_params
from index.ivf_files import write_index_files
from index.snapshot import FORMAT_VERSION, MANIFEST_NAME
from index.store import ImageRow, write_store

logger = logging.getLogger(__name__)


def write_snapshot_files(folder: Path, *, version: str, encoder, images: Sequence[ImageRow],
                         image_vectors: np.ndarray, captions: Sequence[tuple[str, list[int]]],
                         caption_vectors: np.ndarray, settings: IndexSettings,
                         extra_manifest: dict[str, Any], decode: DecodeConfig,
                         image_parts: Optional[Sequence[np.ndarray]] = None) -> dict:
    """Write vectors, indexes, metadata and, last, the manifest; return the manifest.

    ``image_parts`` lists the image rows of each embedding shard, so an IVF
    image index is filled shard by shard (see ``index.ivf_files``).
    """
    dim = int(encoder.embed_dim)
    image_vectors = image_vectors.reshape(len(images), dim).astype(np.float32)  # [images, dim]
    caption_vectors = caption_vectors.reshape(len(captions), dim).astype(np.float32)  # [captions, dim]
    np.save(folder / "images.npy", image_vectors)
    np.save(folder / "captions.npy", caption_vectors)
    image_params = resolve_params(len(images), dim, settings)
    caption_params = resolve_params(len(captions), dim, settings)
    write_index_files(folder, "images", image_vectors, image_params, parts=image_parts, use_gpu=settings.use_gpu)
    write_index_files(folder, "captions", caption_vectors, caption_params, use_gpu=settings.use_gpu)
    write_store(folder / "metadata.sqlite", images, captions)
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder": {"source": encoder.source, "fingerprint": encoder.fingerprint, "identity": encoder.identity},
        "embed_dim": dim,
        "image_count": len(images),
        "caption_count": len(captions),
        "images_index": image_params.to_dict(),
        "captions_index": caption_params.to_dict(),
        "faiss_version": faiss.__version__,
        "vector_dtype": "float32",
        "decode": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(decode).items()},
        **extra_manifest,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest
