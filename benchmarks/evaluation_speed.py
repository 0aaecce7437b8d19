"""Evaluation and recommendation speed: fastrank vs LightFM, lightfm-next and implicit, side by side in one run.

On a synthetic power-law set (default 10,000 users x 20,000 items, 64 components, one thread):

- precision@10 + AUC with fastrank.evaluation vs lightfm.evaluation (rectools-lightfm in this
  process, lightfm-next in a worker process, see below) and vs implicit.evaluation's
  ``precision_at_k`` + ``AUC_at_k`` (AUC of the top-10 only, not the full AUC: see the notes);
- fastrank's one-pass ``ranking_metrics`` (all metrics at once) vs implicit's one-pass
  ``ranking_metrics_at_k``;
- top-10 ``recommend`` for 2,000 users vs a loop over LightFM's ``predict`` with seen items
  removed and ``argpartition`` (both LightFMs), and vs implicit's batch ``recommend``;
- the physical floor: one sgemm of the same shape (users x (components + 1) x items).

The LightFMs train their own model (WARP, one epoch, like fastrank's). implicit gets fastrank's
trained model: an implicit BPR model (``factors=64``) whose factors are set to fastrank's
(users ``[embedding, 1]``, items ``[embedding, item bias]``: fastrank's scores minus the user
bias, so the same rankings and the same work).

lightfm-next installs a package named ``lightfm`` too, so it lives in ``.bench-venv-next``; it is
measured by a worker process with that venv's interpreter (``--lightfm-next-python``, default
``.bench-venv-next/bin/python`` when it exists) on the same train/test matrices and users, written
to a temporary ``.npz`` (``_lightfm_worker.py``), with the same code and timing as LightFM.

Run it in the benchmark venv (``benchmarks/make_peer_venv.sh``) to include the peers; without
them only fastrank's figures are printed. BLAS is pinned to one thread so that the "one
thread" comparison holds for every library (implicit: ``num_threads=1`` for the model's
``recommend`` and for the evaluation calls).
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


def implicit_model_from(model, bpr_module, components):
    """implicit BPR model (one thread) holding fastrank's trained factors.

    implicit scores ``user_factors @ item_factors.T`` with ``factors + 1`` columns (the last is
    1 for users and the item bias for items); with fastrank's embeddings and item biases that is
    fastrank's score minus the user bias, a per-user constant, so the rankings are fastrank's.
    """
    user_biases, user_embeddings = model.get_user_representations()
    item_biases, item_embeddings = model.get_item_representations()
    peer = bpr_module.BayesianPersonalizedRanking(factors=components, num_threads=1, random_state=0)
    peer.user_factors = np.ascontiguousarray(
        np.hstack([user_embeddings, np.ones((user_embeddings.shape[0], 1), dtype=np.float32)]), dtype=np.float32)
    peer.item_factors = np.ascontiguousarray(np.hstack([item_embeddings, item_biases[:, None]]), dtype=np.float32)
    return peer


def main(argv=None):
    from _lightfm_worker import DEFAULT_NEXT_PYTHON, WorkerPeer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--recommend-users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-lightfm", action="store_true")
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--lightfm-next-python",
                        default=str(DEFAULT_NEXT_PYTHON) if DEFAULT_NEXT_PYTHON.exists() else "",
                        help="interpreter of the venv with lightfm-next (.bench-venv-next); '' = none")
    parser.add_argument("--skip-lightfm-next", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    k = 10

    import fastrank
    from fastrank import FastRank
    from fastrank.evaluation import auc_score, precision_at_k, ranking_metrics

    lightfm = None if args.skip_lightfm else try_import("lightfm")
    implicit = None if args.skip_implicit else try_import("implicit")
    implicit_bpr = None if args.skip_implicit else try_import("implicit.cpu.bpr")
    implicit_evaluation = None if args.skip_implicit else try_import("implicit.evaluation")
    lightfm_next = WorkerPeer(None if args.skip_lightfm_next else args.lightfm_next_python)
    print("\n".join(environment_summary([m for m in [try_import("fastrank"), lightfm, implicit] if m is not None])))
    print("lightfm-next: skipped" if args.skip_lightfm_next else lightfm_next.summary())
    print(f"fastrank OpenMP: {fastrank.openmp_enabled()}")

    data = make_power_law(args.users, args.items, args.interactions, seed=7)
    train, test = split(data, 0.2, seed=8)
    print(f"data: {args.users} users x {args.items} items, train {train.nnz}, test {test.nnz}, "
          f"{args.components} components, one thread\n")

    model = FastRank(no_components=args.components, loss="warp", random_state=0).fit(train, epochs=1)
    rows = []
    speedups = {}

    def add(task, fastrank_timing, peer_name, peer_timing, status="-"):
        """One row: a fastrank task against one peer's version of it (None: the peer's status)."""
        ours = fastrank_timing.best
        theirs = peer_timing.best if peer_timing is not None else None
        if theirs is not None:
            speedups[(task, peer_name)] = theirs / ours
        rows.append([task, f"{ours:.3f}", peer_name, f"{theirs:.3f}" if theirs is not None else status,
                     f"{theirs / ours:.1f}x" if theirs is not None else "-"])

    def status_of(module, skipped):
        return "skipped" if skipped else module.status

    ours_metrics = time_repeated(
        lambda: (precision_at_k(model, test, train, k=k), auc_score(model, test, train)), args.repeats
    )
    one_pass = time_repeated(lambda: ranking_metrics(model, test, train, k=k), args.repeats)
    users = np.random.default_rng(9).choice(args.users, size=args.recommend_users, replace=False)
    ours_recommend = time_repeated(
        lambda: model.recommend(users, k=k, filter_interactions=train), args.repeats
    )
    ours_values = {"precision": float(np.mean(precision_at_k(model, test, train, k=k))),
                   "auc": float(np.mean(auc_score(model, test, train)))}

    # ---- LightFM (rectools-lightfm), in this process
    peer_metrics = peer_recommend = lightfm_values = None
    if lightfm is not None and lightfm.available:
        from lightfm import LightFM
        from lightfm.evaluation import auc_score as lightfm_auc
        from lightfm.evaluation import precision_at_k as lightfm_precision

        peer = LightFM(no_components=args.components, loss="warp", random_state=0)
        peer.fit(train, epochs=1, num_threads=1)
        peer_metrics = time_repeated(
            lambda: (
                lightfm_precision(peer, test, train, k=k, num_threads=1),
                lightfm_auc(peer, test, train, num_threads=1),
            ),
            repeats=1,
            warmup=0,
        )
        peer_recommend = time_repeated(lambda: lightfm_recommend(peer, users, train, k), repeats=1, warmup=0)
        lightfm_values = {"precision": float(np.mean(lightfm_precision(peer, test, train, k=k, num_threads=1))),
                          "auc": float(np.mean(lightfm_auc(peer, test, train, num_threads=1)))}
    elif lightfm is not None:
        print(f"LightFM: {lightfm.status} ({lightfm.error})\n")

    # ---- lightfm-next: the same fit and the same timed calls, in a worker process with its venv
    next_result = None
    next_status = "skipped" if args.skip_lightfm_next else lightfm_next.status
    if lightfm_next.available:
        try:
            path = lightfm_next.write_data(train=train, test=test, users=users)
            next_result = lightfm_next.evaluate(
                path, model={"no_components": args.components, "loss": "warp", "random_state": 0},
                fit={"epochs": 1, "num_threads": 1}, k=k, repeats=1, warmup=0)
        except RuntimeError as exc:
            next_status = "error"
            print(exc, file=sys.stderr)
        finally:
            lightfm_next.close()

    # ---- implicit, with fastrank's factors, one thread
    implicit_metrics = implicit_one_pass = implicit_recommend = None
    implicit_values = {}
    implicit_ready = all(m is not None and m.available for m in (implicit, implicit_bpr, implicit_evaluation))
    if implicit_ready:
        evaluation = implicit_evaluation.module
        peer = implicit_model_from(model, implicit_bpr.module, args.components)

        def implicit_both():
            implicit_values["precision"] = evaluation.precision_at_k(
                peer, train, test, K=k, show_progress=False, num_threads=1)
            implicit_values["auc@k"] = evaluation.AUC_at_k(peer, train, test, K=k, show_progress=False, num_threads=1)

        implicit_metrics = time_repeated(implicit_both, args.repeats)
        implicit_one_pass = time_repeated(
            lambda: evaluation.ranking_metrics_at_k(peer, train, test, K=k, show_progress=False, num_threads=1),
            args.repeats)
        # what an implicit user writes: the seen-item rows of these users, sliced here (inside the
        # timing, as fastrank's recommend slices filter_interactions itself)
        implicit_recommend = time_repeated(
            lambda: peer.recommend(users, train[users], N=k, filter_already_liked_items=True), args.repeats)
        ours_ids, _ = model.recommend(users, k=k, filter_interactions=train)
        their_ids, _ = peer.recommend(users, train[users], N=k, filter_already_liked_items=True)
        implicit_values["same top-10"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours_ids, their_ids)]))
    elif implicit is not None:
        broken = next(m for m in (implicit, implicit_bpr, implicit_evaluation) if not m.available)
        print(f"implicit: {broken.status} ({broken.error})\n")

    metrics_task = f"precision@{k} + AUC"
    recommend_task = f"recommend top-{k}, {args.recommend_users} users"
    lightfm_status = status_of(lightfm, args.skip_lightfm) if lightfm is None or not lightfm.available else "-"
    if args.skip_implicit:
        implicit_status = "skipped"
    elif implicit_ready:
        implicit_status = "-"
    else:
        implicit_status = next(m for m in (implicit, implicit_bpr, implicit_evaluation) if not m.available).status
    add(metrics_task, ours_metrics, "LightFM", peer_metrics, lightfm_status)
    add(metrics_task, ours_metrics, "lightfm-next", next_result["metrics"] if next_result else None, next_status)
    add(metrics_task, ours_metrics, f"implicit precision@{k} + AUC@{k} (not full AUC) [1]", implicit_metrics,
        implicit_status)
    add("ranking_metrics (all, one pass)", one_pass, f"implicit ranking_metrics_at_k (one pass, AUC@{k}) [1]",
        implicit_one_pass, implicit_status)
    add(recommend_task, ours_recommend, "LightFM predict loop", peer_recommend, lightfm_status)
    add(recommend_task, ours_recommend, "lightfm-next predict loop", next_result["recommend"] if next_result else None,
        next_status)
    add(recommend_task, ours_recommend, "implicit recommend (batch) [2]", implicit_recommend, implicit_status)

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
          f"its sgemm. Times are the best of {args.repeats} after one warm-up call for fastrank and implicit, "
          f"one run for LightFM and lightfm-next (same code and timing for both; lightfm-next in a worker "
          f"process). speed-up = peer s / fastrank s.")
    summary = []
    for task in (metrics_task, recommend_task):
        parts = [f"{peer.split(' [')[0]} {value:.1f}x" for (name, peer), value in speedups.items() if name == task]
        if parts:
            summary.append(f"{task}: " + ", ".join(parts))
    if summary:
        print("fastrank speed-up, " + "; ".join(summary) + ".")
    print(f"\n[1] implicit's AUC_at_k is not the AUC that fastrank and LightFM compute: it looks only at the "
          f"top-{k} list (test items outside it are scored as if placed at random among the remaining items, "
          f"train items count as negatives), while full AUC ranks every test item among all non-train items. "
          f"Its precision divides the hits by min({k}, test items of the user), summed over users "
          f"(fastrank/LightFM: by {k}, per user). implicit.evaluation's precision_at_k and AUC_at_k each run "
          f"the whole ranking_metrics_at_k (batch recommend calls of 1,000 users + the metrics), as fastrank's "
          f"two calls each score every item. Per user that is a full scoring pass plus a top-{k} selection "
          f"for implicit and a full scoring pass plus counting for fastrank: the times compare, the AUC "
          f"values do not.")
    print(f"[2] implicit model: fastrank's trained factors (users [embedding, 1], items [embedding, bias]: the "
          f"same ranking), num_threads=1 for recommend and the evaluation calls, BLAS pinned to one thread; "
          f"timed call: model.recommend(users, train[users], N={k}, filter_already_liked_items=True), the row "
          f"slicing included (fastrank's recommend slices filter_interactions itself).")
    values = [f"fastrank precision@{k} {ours_values['precision']:.4f}, AUC {ours_values['auc']:.4f}"]
    if lightfm_values:
        values.append(f"LightFM (own model) precision@{k} {lightfm_values['precision']:.4f}, "
                      f"AUC {lightfm_values['auc']:.4f}")
    if next_result:
        values.append(f"lightfm-next (own model) precision@{k} {next_result['precision']:.4f}, "
                      f"AUC {next_result['auc']:.4f}")
    if implicit_values:
        values.append(f"implicit (fastrank's factors) precision@{k} {implicit_values['precision']:.4f}, "
                      f"AUC@{k} {implicit_values['auc@k']:.4f}; top-{k} lists shared with fastrank's recommend: "
                      f"{100 * implicit_values['same top-10']:.1f}%")
    print("Values (sanity): " + "; ".join(values) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
