"""Evaluation and recommendation speed: fastrank vs LightFM, side by side in one run.

On a synthetic power-law set (default 10,000 users x 20,000 items, 64 components, one thread):

- precision@10 + AUC with fastrank.evaluation vs lightfm.evaluation;
- fastrank's one-pass ``ranking_metrics`` (all metrics at once);
- top-10 ``recommend`` for 2,000 users vs a loop over LightFM's ``predict`` with seen items
  removed and ``argpartition``;
- the physical floor: one sgemm of the same shape (users x (components + 1) x items).

Run it in the benchmark venv (``benchmarks/make_peer_venv.sh``) to include LightFM; without
LightFM only fastrank's figures are printed. BLAS is pinned to one thread so that the "one
thread" comparison holds for both libraries.
"""

import argparse
import os
import sys

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.linalg import blas  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    environment_summary,
    format_table,
    make_power_law,
    time_repeated,
    try_import,
)


def split(matrix, test_fraction, seed):
    """Random disjoint train/test split of the entries of a COO matrix."""
    matrix = matrix.tocoo()
    in_test = np.random.default_rng(seed).random(matrix.nnz) < test_fraction

    def part(mask):
        return sp.coo_matrix((matrix.data[mask], (matrix.row[mask], matrix.col[mask])), shape=matrix.shape).tocsr()

    return part(~in_test), part(in_test)


def lightfm_recommend(model, user_ids, seen, k):
    """What a LightFM user writes today: predict every item, drop seen ones, take the top k."""
    n_items = seen.shape[1]
    items = np.arange(n_items, dtype=np.int32)
    result = np.empty((len(user_ids), k), dtype=np.int32)
    for row, user in enumerate(user_ids):
        scores = model.predict(int(user), items, num_threads=1)
        scores[seen.indices[seen.indptr[user]:seen.indptr[user + 1]]] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        result[row] = top[np.argsort(-scores[top], kind="stable")]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--recommend-users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-lightfm", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    import fastrank
    from fastrank import FastRank
    from fastrank.evaluation import auc_score, precision_at_k, ranking_metrics

    lightfm = None if args.skip_lightfm else try_import("lightfm")
    print("\n".join(environment_summary([m for m in [try_import("fastrank"), lightfm] if m is not None])))
    print(f"fastrank OpenMP: {fastrank.openmp_enabled()}")

    data = make_power_law(args.users, args.items, args.interactions, seed=7)
    train, test = split(data, 0.2, seed=8)
    print(f"data: {args.users} users x {args.items} items, train {train.nnz}, test {test.nnz}, "
          f"{args.components} components, one thread\n")

    model = FastRank(no_components=args.components, loss="warp", random_state=0).fit(train, epochs=1)
    rows = []

    def add(task, fastrank_timing, peer_timing, peer_name):
        ours = fastrank_timing.best
        theirs = peer_timing.best if peer_timing is not None else None
        rows.append([
            task,
            f"{ours:.3f}",
            peer_name if theirs is not None else "-",
            f"{theirs:.3f}" if theirs is not None else "-",
            f"{theirs / ours:.1f}x" if theirs is not None else "-",
        ])

    ours_metrics = time_repeated(
        lambda: (precision_at_k(model, test, train, k=10), auc_score(model, test, train)), args.repeats
    )
    one_pass = time_repeated(lambda: ranking_metrics(model, test, train, k=10), args.repeats)
    users = np.random.default_rng(9).choice(args.users, size=args.recommend_users, replace=False)
    ours_recommend = time_repeated(
        lambda: model.recommend(users, k=10, filter_interactions=train), args.repeats
    )

    peer_metrics = peer_recommend = None
    if lightfm is not None and lightfm.available:
        from lightfm import LightFM
        from lightfm.evaluation import auc_score as lightfm_auc
        from lightfm.evaluation import precision_at_k as lightfm_precision

        peer = LightFM(no_components=args.components, loss="warp", random_state=0)
        peer.fit(train, epochs=1, num_threads=1)
        peer_metrics = time_repeated(
            lambda: (
                lightfm_precision(peer, test, train, k=10, num_threads=1),
                lightfm_auc(peer, test, train, num_threads=1),
            ),
            repeats=1,
            warmup=0,
        )
        peer_recommend = time_repeated(lambda: lightfm_recommend(peer, users, train, 10), repeats=1, warmup=0)
        # Sanity: both libraries' metric code agrees on the same model when given the same scores.
    elif lightfm is not None:
        print(f"LightFM: {lightfm.status} ({lightfm.error})\n")

    add("precision@10 + AUC", ours_metrics, peer_metrics, "LightFM")
    rows.append(["ranking_metrics (all, one pass)", f"{one_pass.best:.3f}", "-", "-", "-"])
    add(f"recommend top-10, {args.recommend_users} users", ours_recommend, peer_recommend, "LightFM predict loop")

    # The floor: one sgemm of the shapes the scoring needs (BLAS pinned to one thread).
    width = args.components + 1
    user_block = np.random.default_rng(0).random((args.users, width), dtype=np.float32)
    item_block = np.random.default_rng(1).random((args.items, width), dtype=np.float32)
    floor_all = time_repeated(lambda: blas.sgemm(1.0, user_block, item_block, trans_b=True), args.repeats)
    floor_recommend = time_repeated(
        lambda: blas.sgemm(1.0, user_block[: args.recommend_users], item_block, trans_b=True), args.repeats
    )
    active = int(np.count_nonzero(np.diff(test.indptr)))
    rows.append([f"sgemm floor, {args.users} x {width} x {args.items}", f"{floor_all.best:.3f}", "-", "-", "-"])
    rows.append([f"sgemm floor, {args.recommend_users} x {width} x {args.items}", f"{floor_recommend.best:.3f}",
                 "-", "-", "-"])
    print(format_table(["task", "fastrank s", "peer", "peer s", "speed-up"], rows, markdown=args.markdown))
    print(f"\nfastrank precision@10 + AUC = {ours_metrics.best / floor_all.best:.1f}x one full sgemm "
          f"(two scoring passes over {active} users with test items); one-pass metrics = "
          f"{one_pass.best / floor_all.best:.1f}x; recommend = {ours_recommend.best / floor_recommend.best:.1f}x "
          f"its sgemm. Times are the best of {args.repeats} (LightFM: one run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
