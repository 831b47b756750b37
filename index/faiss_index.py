"""FAISS index construction and per-call search parameters.

Every index uses inner product on L2-normalised vectors, so scores are cosine
similarities. Vectors are added in row order, so a FAISS label is the row of
that vector in the snapshot's metadata tables.

``ivf-ondisk`` is an ``IndexIVFFlat`` whose inverted lists live in a separate
``.ivfdata`` file (FAISS ``OnDiskInvertedLists``). Readers memory-map that
file, so the lists need not fit in RAM; ``index.ivf_files`` writes it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

import faiss
import numpy as np

from index.errors import IndexConfigError

logger = logging.getLogger(__name__)

INDEX_TYPES = ("auto", "flat", "ivf", "ivf-ondisk", "hnsw")
IVF_TYPES = ("ivf", "ivf-ondisk")
MIN_POINTS_PER_CENTROID = 39  # below this FAISS k-means warns that training is unreliable
TRAIN_POINTS_PER_CENTROID = 40
TRAIN_ITERATIONS = 10


@dataclass(frozen=True)
class IndexSettings:
    """How to choose and tune an index; ``None`` fields are derived from the size."""

    index_type: str = "auto"  # flat | ivf | ivf-ondisk | hnsw | auto (flat up to exact_max, else ivf)
    exact_max: int = 200_000
    ivf_nlist: Optional[int] = None  # default 4 * sqrt(count)
    ivf_nprobe: Optional[int] = None  # default max(32, nlist / 64), at most nlist
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    use_gpu: Optional[bool] = None  # None: use GPU FAISS when it is installed and finds a GPU

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise IndexConfigError(f"index_type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        if self.exact_max < 0:
            raise IndexConfigError(f"exact_max must be >= 0, got {self.exact_max}")
        for name in ("ivf_nlist", "ivf_nprobe"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise IndexConfigError(f"{name} must be >= 1, got {value}")
        if self.hnsw_m < 2 or self.hnsw_ef_construction < 1 or self.hnsw_ef_search < 1:
            raise IndexConfigError("hnsw_m must be >= 2 and hnsw_ef_construction, hnsw_ef_search >= 1")


@dataclass(frozen=True)
class IndexParams:
    """The resolved parameters of one built index, recorded in the manifest."""

    index_type: str  # flat | ivf | ivf-ondisk | hnsw
    count: int
    dim: int
    nlist: Optional[int] = None
    nprobe: Optional[int] = None
    hnsw_m: Optional[int] = None
    ef_construction: Optional[int] = None
    ef_search: Optional[int] = None
    metric: str = "inner_product"

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def resolve_params(count: int, dim: int, settings: IndexSettings) -> IndexParams:
    """Pick the index type and its parameters for ``count`` vectors."""
    index_type = settings.index_type
    if index_type == "auto":
        index_type = "flat" if count <= settings.exact_max else "ivf"
    if index_type == "flat" or count == 0:
        return IndexParams("flat", count, dim)  # IVF training needs at least one vector
    if index_type == "hnsw":
        return IndexParams("hnsw", count, dim, hnsw_m=settings.hnsw_m,
                           ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search)
    nlist = settings.ivf_nlist or int(4 * math.sqrt(max(count, 1)))
    nlist = max(1, min(nlist, count // MIN_POINTS_PER_CENTROID))
    # The default reached recall@10 0.97 at 1.6 ms median per query on one
    # million synthetic vectors (benchmarks/index_bench.py); real data may differ.
    nprobe = min(settings.ivf_nprobe or max(32, nlist // 64), nlist)
    return IndexParams(index_type, count, dim, nlist=nlist, nprobe=nprobe)


def build_faiss_index(vectors: np.ndarray, params: IndexParams, *, use_gpu: Optional[bool] = None) -> faiss.Index:
    """Build and fill an in-memory index for ``vectors`` ``[count, dim]`` float32.

    An ``ivf-ondisk`` request gets the same index with in-memory lists; use
    ``index.ivf_files.write_index_files`` to store its lists on disk.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (params.count, params.dim):
        raise IndexConfigError(f"vectors have shape {vectors.shape}, expected {(params.count, params.dim)}")
    started = time.perf_counter()
    if params.index_type == "flat":
        index = faiss.IndexFlatIP(params.dim)
    elif params.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(params.dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    else:
        index = train_ivf(vectors, params, use_gpu=use_gpu)
    if params.count:
        index.add(vectors)
    logger.info("built %s index: %d vectors, dimension %d, %.1f s",
                params.index_type, index.ntotal, params.dim, time.perf_counter() - started)
    return index


def train_ivf(vectors: np.ndarray, params: IndexParams, *, use_gpu: Optional[bool] = None) -> faiss.Index:
    """Return an empty ``IndexIVFFlat`` whose coarse quantizer is trained on a sample of ``vectors``.

    The sample is drawn with a fixed seed, so the same vectors always give the
    same centroids, whether the lists are then filled at once or per shard.
    """
    use_gpu = _resolve_use_gpu(use_gpu)
    quantizer = faiss.IndexFlatIP(params.dim)
    index = faiss.IndexIVFFlat(quantizer, params.dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = params.nprobe
    # k-means on 40 points per centroid for 10 iterations keeps training time
    # linear in nlist; recall at this setting is measured by benchmarks/index_bench.py.
    index.cp.niter = TRAIN_ITERATIONS
    sample_size = min(len(vectors), params.nlist * TRAIN_POINTS_PER_CENTROID)
    rng = np.random.default_rng(0)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))] if sample_size < len(vectors) else vectors
    if use_gpu:
        # NOTE: this branch needs faiss-gpu and has not run on a GPU in the test suite.
        clustering = faiss.Clustering(params.dim, params.nlist)
        gpu_quantizer = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(params.dim))
        clustering.train(sample, gpu_quantizer)
        quantizer.add(faiss.vector_to_array(clustering.centroids).reshape(params.nlist, params.dim))
        index.is_trained = True
    else:
        index.train(sample)
    return index


def _resolve_use_gpu(use_gpu: Optional[bool]) -> bool:
    available = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if use_gpu and not available:
        raise IndexConfigError("use_gpu is set but this FAISS build finds no GPU; install faiss-gpu or unset it")
    return available if use_gpu is None else bool(use_gpu)


def search_parameters(params: IndexParams, *, nprobe: Optional[int] = None,
                      ef_search: Optional[int] = None) -> Optional[faiss.SearchParameters]:
    """Return per-call FAISS search parameters; the shared index is never changed."""
    if params.index_type in IVF_TYPES:
        value = params.nprobe if nprobe is None else nprobe
        if value < 1:
            raise IndexConfigError(f"nprobe must be >= 1, got {value}")
        return faiss.SearchParametersIVF(nprobe=int(min(value, params.nlist)))
    if params.index_type == "hnsw":
        value = params.ef_search if ef_search is None else ef_search
        if value < 1:
            raise IndexConfigError(f"ef_search must be >= 1, got {value}")
        return faiss.SearchParametersHNSW(efSearch=int(value))
    return None
