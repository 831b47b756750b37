"""Archive embedding job and FAISS index snapshots.

The job walks an image archive, embeds every readable image with the adapted
image encoder of ``model/``, embeds a deduplicated caption corpus with the
text encoder, and publishes a versioned snapshot folder:

* ``images.faiss`` and ``captions.faiss``: inner-product FAISS indexes, exact
  (flat) up to ``exact_max`` vectors, IVF (or HNSW on request) beyond, or IVF
  with memory-mapped on-disk lists (``ivf-ondisk``, plus ``*.ivfdata`` files);
* ``metadata.sqlite``: image id to path, size, SHA-256, label, GeoTIFF bounds
  and CRS, and captions;
* ``manifest.json``: encoder identity and fingerprint, embedding dimension,
  counts, index parameters and creation time.

Publishing is atomic: the ``CURRENT`` file under the snapshot root names the
live snapshot and is switched by rename after the new folder is complete and
fsynced. Loading a snapshot with another encoder raises ``SnapshotMismatch``.

Main entry points: ``index.build.build_snapshot``, ``index.build.update_snapshot``
and ``index.snapshot.open_current_snapshot``. A large archive can be embedded
by many workers with ``index.sharded.embed_shard`` and published with
``index.merge.merge_shards``. The command line is ``harma-index`` (or
``python -m index``) with the subcommands ``build``, ``update``,
``embed-shard``, ``merge``, ``info`` and ``query``; run ``harma-index --help``
for details.

Importing this package loads nothing and starts nothing.
"""
