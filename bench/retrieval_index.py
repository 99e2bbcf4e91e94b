"""The RAG retriever's index choice: approximate HNSW vs exact FlatIP, plus MiniLM throughput.

What it measures, per corpus size in `--sizes`:
  * query latency of `faiss.IndexHNSWFlat` (inner product, M=32, efConstruction=80,
    efSearch=max(64, 2k) -- exactly what `Retriever.build` / `Retriever.search` use above
    `ann_threshold`) for one batch of `--queries` queries, as a RATIO against the reference
    measured in the same run: exact `faiss.IndexFlatIP` on the same vectors and queries;
  * recall@k of HNSW against the exact top-k (share of the exact top-k that HNSW returns);
  * the one-off HNSW build time against the flat build time.
The corpus is synthetic: L2-normalised float32 vectors of dimension `--dim` (MiniLM's 384)
drawn around `--clusters` random centres, so it has some of the structure of real sentence
embeddings without embedding 100k texts. `--clusters 0` gives uniform random unit vectors,
the hardest case for any graph index.

Real measurements on the shipped sample (`examples/banking77-sample.csv`):
  * MiniLM embedding throughput through `worker.pilots.retrieval.embed` (batch_size=64, as
    the retriever embeds), texts/s, against the same texts embedded one at a time;
  * `Retriever.build` forced to HNSW (`ann_threshold=0`) vs the default exact index on the
    sample's real embeddings: recall@k of HNSW against exact, with held-out texts as queries.

Run from the repository root:  .venv/bin/python -m bench.retrieval_index
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from bench.common import SAMPLE
from worker.model_store import default_embedder_path
from worker.pilots.resources import load_embedder
from worker.pilots.retrieval import Retriever, embed

# The parameters Retriever.build / Retriever.search use (kept in step with retrieval.py).
HNSW_M = 32
EF_CONSTRUCTION = 80


def ef_search(k: int) -> int:
    return max(64, 2 * k)


def unit_vectors(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray | None) -> Any:
    """`n` L2-normalised float32 rows, scattered around `centres` when given."""
    if centres is None:
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        picks = rng.integers(0, len(centres), size=n)
        noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
        vectors = centres[picks] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time per named call over `repeats` rounds, after one untimed warm-up each.

    The calls alternate within each round, so load from other work on a shared machine
    falls on both sides of a ratio alike.
    """
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def warm_up(dim: int) -> None:
    """Start faiss's OpenMP threads and BLAS once, so the first size measured pays nothing extra."""
    rng = np.random.default_rng(1)
    data = unit_vectors(rng, 2_000, dim, None)
    for index in (
        faiss.IndexFlatIP(dim),
        faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT),
    ):
        index.add(data)
        index.search(data[:200], 10)


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the approximate top-k contains."""
    k = exact.shape[1]
    found = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact, strict=True))
    return found / (k * len(exact))


def synthetic(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    centres = None
    if args.clusters > 0:
        centres = unit_vectors(rng, args.clusters, args.dim, None)
    print(
        f"synthetic: dim={args.dim} clusters={args.clusters or 'none (uniform)'} "
        f"queries/batch={args.queries} k={args.k} hnsw M={HNSW_M} "
        f"efConstruction={EF_CONSTRUCTION} efSearch={ef_search(args.k)} "
        f"faiss_threads={faiss.omp_get_max_threads()}"
    )
    queries = unit_vectors(rng, args.queries, args.dim, centres)
    warm_up(args.dim)
    for size in args.sizes:
        corpus = unit_vectors(rng, size, args.dim, centres)

        started = time.perf_counter()
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(corpus)
        flat_build = time.perf_counter() - started

        started = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(args.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        hnsw.add(corpus)
        hnsw_build = time.perf_counter() - started
        hnsw.hnsw.efSearch = ef_search(args.k)

        _, exact = flat.search(queries, args.k)
        _, approx = hnsw.search(queries, args.k)
        times = median_times(
            {
                "flat": lambda: flat.search(queries, args.k),  # noqa: B023
                "hnsw": lambda: hnsw.search(queries, args.k),  # noqa: B023
            },
            args.repeats,
        )
        t_flat, t_hnsw = times["flat"], times["hnsw"]
        print(
            f"  n={size:>7}: flat {t_flat * 1e3:8.2f} ms/batch (reference), "
            f"hnsw {t_hnsw * 1e3:7.2f} ms/batch -> latency ratio hnsw/flat "
            f"{t_hnsw / t_flat:.3f} ({t_flat / t_hnsw:.1f}x faster); "
            f"recall@{args.k} {recall(approx, exact):.3f}; "
            f"build flat {flat_build:.2f} s, hnsw {hnsw_build:.1f} s "
            f"(ratio {hnsw_build / max(flat_build, 1e-9):.0f}x)"
        )


def real(args: argparse.Namespace) -> None:
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    embedder = load_embedder(str(default_embedder_path()), "cpu")
    embed(embedder, texts[:8])  # warm-up, not timed
    sample = texts[: args.embed_texts]
    # Reference in the same run: the same texts one at a time (batch_size=1), as a caller that
    # embeds each query on its own would; alternated with the batched run, medians.
    times = median_times(
        {
            "batched": lambda: embed(embedder, sample, batch_size=args.embed_batch_size),
            "single": lambda: embed(embedder, sample, batch_size=1),
        },
        args.embed_repeats,
    )
    batched_rate = len(sample) / times["batched"]
    single_rate = len(sample) / times["single"]
    print(
        f"MiniLM embedding via retrieval.embed, first {len(sample)} sample texts: "
        f"batch_size={args.embed_batch_size} {batched_rate:.0f} texts/s, batch_size=1 "
        f"{single_rate:.0f} texts/s (reference) -> ratio {batched_rate / single_rate:.2f}x"
    )

    # Real embeddings: index all but the last `--queries` texts, query with the held-out ones.
    held = min(args.queries, len(texts) // 5)
    corpus, queries = texts[:-held], texts[-held:]
    ids = [str(i) for i in range(len(corpus))]
    exact = Retriever.build(corpus, ids, embedder)
    approx = Retriever.build(corpus, ids, embedder, ann_threshold=0)
    assert exact.kind == "flat" and approx.kind == "hnsw", (exact.kind, approx.kind)
    k = min(args.k, len(corpus))
    exact_hits = exact.search(queries, k)
    approx_hits = approx.search(queries, k)
    found = sum(
        len({h.position for h in a} & {h.position for h in e})
        for a, e in zip(approx_hits, exact_hits, strict=True)
    )
    print(
        f"Retriever.build on the sample ({len(corpus)} texts, {held} held-out queries): "
        f"ann_threshold=0 -> {approx.kind}, default -> {exact.kind}; "
        f"recall@{k} hnsw vs exact {found / (k * held):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[20_000, 100_000], help="corpus sizes"
    )
    parser.add_argument("--dim", type=int, default=384, help="vector dimension (MiniLM: 384)")
    parser.add_argument("--clusters", type=int, default=1000, help="0 = uniform unit vectors")
    parser.add_argument("--queries", type=int, default=200, help="queries per search batch")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--repeats", type=int, default=5, help="timed searches (median)")
    parser.add_argument(
        "--embed-batch-size", type=int, default=64, help="retrieval.embed's default: 64"
    )
    parser.add_argument(
        "--embed-texts", type=int, default=256, help="sample texts embedded for throughput"
    )
    parser.add_argument("--embed-repeats", type=int, default=1, help="timed embedding rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-real", action="store_true", help="synthetic part only")
    args = parser.parse_args()
    synthetic(args)
    if not args.skip_real:
        real(args)


if __name__ == "__main__":
    main()
