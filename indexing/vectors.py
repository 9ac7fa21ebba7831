"""Vector index types: which FAISS index holds the chunk vectors, and how each is
built, taken apart and searched.

``flat``  exact inner product, ``IndexIDMap2(IndexFlatIP)``; the default below the
          threshold and the type of every index written before types existed.
``ivf``   approximate, ``IndexIVFFlat`` (inner product, chunk ids stored natively, a
          hash-table direct map for ``reconstruct``):
          a k-means coarse quantizer with ~2·sqrt(n) lists, ``nprobe`` of them scanned
          per query. Adds and removals work in place; what ``auto`` picks at scale.
``hnsw``  approximate, ``IndexIDMap2(IndexHNSWFlat)``: on request only. Queries were
          no faster than ivf's at 1M passages, a build took ten times as long, and
          FAISS cannot remove from the graph, so a removal rebuilds it at commit.

bench/scale.py measured the choice and parameters on 100k and 1M passages
(bench/README.md, "Scale").
"""

from __future__ import annotations

import math

import numpy as np

INDEX_TYPES = ("flat", "ivf", "hnsw")
CHOICES = ("auto", *INDEX_TYPES)
APPROXIMATE = "ivf"  # what `auto` builds at and above the threshold
# Chunks: flat single-query search took ~7 ms at 50k, ~10 at 100k and ~140 at 1M on the
# shared 2-core machine, ivf 0.4-3 ms at recall@10 0.97-0.98 (bench/README.md, "Scale").
DEFAULT_THRESHOLD = 50_000

IVF_LISTS_PER_SQRT = 2  # nlist = 2 * sqrt(n): half the build time of 4 * sqrt(n) at 1M
IVF_TRAIN_PER_LIST = 40  # k-means sample: 40 points per list (FAISS warns below 39)
IVF_TRAIN_ITERATIONS = 10
IVF_NPROBE_FRACTION = 1 / 64  # lists scanned per query, at least IVF_MIN_NPROBE
IVF_MIN_NPROBE = 32
IVF_RETRAIN_GROWTH = 4  # retrain when the index holds 4x what it was trained on
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40  # 80 built 1.4x slower at 100k for +0.02 recall at efSearch 128
HNSW_EF_SEARCH = 768  # 1M passages: recall@10 0.941 at 384, 0.946 at 512, 0.957 at 768
EXACT_FILTER_MAX = 20_000  # ivf, hnsw: a doc_ids filter this small is searched exactly
# One OpenMP thread per single-query search: on the shared 2-core machine a second thread
# waits to be scheduled, and flat search over 100k vectors took 100-135 ms instead of 31-48.
SEARCH_THREADS = 1


def choose(choice: str, chunks: int, threshold: int) -> str:
    """The concrete index type for `chunks` vectors under `choice` (auto|flat|ivf|hnsw)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown index type {choice!r}; choose one of {', '.join(CHOICES)}")
    if choice != "auto":
        return choice
    return APPROXIMATE if chunks >= threshold else "flat"


def kind_of(index) -> str:
    """The type name of a FAISS index built by `build` (or 'unknown')."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSWFlat):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
    return "unknown"


def empty_flat(dim: int):
    """The exact index a new index directory starts with."""
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def read(path) -> object:
    """Read an index for searching, memory-mapped (IO_FLAG_MMAP_IFC).

    Opening takes milliseconds instead of seconds at a million vectors, the pages are the
    page cache's (one copy however many generations or processes open the file), and a
    mapping stays valid after a writer deletes the generation. A writer must read with
    plain `faiss.read_index`: a mapped index cannot be changed.
    """
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)


def default_params(kind: str, n: int) -> dict:
    """Build and search parameters for `n` vectors of type `kind`."""
    if kind == "ivf":
        nlist = max(1, min(int(IVF_LISTS_PER_SQRT * math.sqrt(n)), n // IVF_TRAIN_PER_LIST))
        nprobe = min(nlist, max(IVF_MIN_NPROBE, round(nlist * IVF_NPROBE_FRACTION)))
        return {"nlist": nlist, "nprobe": nprobe, "trained_on": n}
    if kind == "hnsw":
        return {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    return {}


def build(kind: str, dim: int, ids: np.ndarray, vectors: np.ndarray,
          params: dict | None = None, seed: int = 1234):
    """A populated index of type `kind` over (`ids`, `vectors`); returns (index, params)."""
    import faiss

    params = dict(params or default_params(kind, len(ids)))
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if kind == "flat":
        index = empty_flat(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = params["ef_construction"]
        index = faiss.IndexIDMap2(inner)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"],
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_TRAIN_ITERATIONS
        index.cp.seed = seed
        sample = min(len(x), IVF_TRAIN_PER_LIST * params["nlist"])
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(x), sample, replace=False)) if sample < len(x) else ...
        index.train(x[pick] if len(x) else np.zeros((1, dim), dtype=np.float32))
        # reconstruct(id) for readers (retrieval folds near-duplicates with it): 16 B an id
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
    else:
        raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_TYPES)}")
    if len(ids):
        index.add_with_ids(x, ids)
    return index, params


def extract(index) -> tuple[np.ndarray, np.ndarray]:
    """Every (id, vector) an index built by `build` holds, ids ascending."""
    import faiss

    kind = kind_of(index)
    d = index.d
    if kind in ("flat", "hnsw"):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        inner = faiss.downcast_index(index.index)
        storage = faiss.downcast_index(inner.storage) if kind == "hnsw" else inner
        x = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * d).reshape(-1, d).copy()
    elif kind == "ivf":
        invlists = index.invlists
        parts_ids, parts_x = [], []
        for lst in range(index.nlist):
            size = invlists.list_size(lst)
            if size == 0:
                continue
            parts_ids.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size)
            parts_x.append(np.frombuffer(codes.tobytes(), dtype=np.float32).reshape(size, d))
        ids = np.concatenate(parts_ids) if parts_ids else np.zeros(0, dtype=np.int64)
        x = np.concatenate(parts_x) if parts_x else np.zeros((0, d), dtype=np.float32)
    else:
        raise ValueError(f"cannot take apart a {type(index).__name__}")
    order = np.argsort(ids, kind="stable")
    return ids[order], np.ascontiguousarray(x[order])


def needs_rebuild(kind: str, params: dict, n: int) -> bool:
    """Whether an ivf index has grown too far past what its lists were trained on."""
    return kind == "ivf" and n >= IVF_RETRAIN_GROWTH * max(1, params.get("trained_on", n))


def search(index, kind: str, params: dict, query: np.ndarray, k: int,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of one query vector, best first; ids -1 pad a short result.

    `allowed`, when given, restricts the search to those ids. ivf and hnsw search a
    small filter exactly (from the stored vectors of the allowed ids) and a large one
    with proportionally more lists (nprobe) or candidates (efSearch).
    """
    import faiss

    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    k = min(k, index.ntotal)
    if kind != "flat" and allowed is not None and len(allowed) <= EXACT_FILTER_MAX:
        return _exact(index, q[0], k, allowed)
    sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
    share = 1.0 if allowed is None else max(len(allowed), 1) / max(index.ntotal, 1)
    if kind == "ivf":
        nprobe = min(index.nlist, math.ceil(params.get("nprobe", 1) / share))
        search_params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
    elif kind == "hnsw":
        ef = max(k, min(index.ntotal, math.ceil(params.get("ef_search", 16) / share)))
        search_params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
    else:
        search_params = faiss.SearchParameters(sel=sel) if sel is not None else None
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(SEARCH_THREADS)
    try:
        scores, ids = index.search(q, k, params=search_params)
    finally:
        faiss.omp_set_num_threads(threads)
    return scores[0], ids[0]


def _exact(index, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    allowed = np.unique(allowed)
    x = index.reconstruct_batch(allowed)
    scores = x @ q
    k = min(k, len(allowed))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(allowed) else np.arange(len(allowed))
    top = top[np.argsort(-scores[top], kind="stable")]
    return scores[top], allowed[top]
