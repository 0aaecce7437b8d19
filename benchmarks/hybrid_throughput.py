"""Training throughput with side features: fastrank vs LightFM and lightfm-next, one thread, side by side.

The case only LightFM serves today. On the synthetic power-law set (default 50,000 users x
20,000 items x 1,000,000 interactions), each item has its identity feature plus 5 of 1,000 shared
tag features and each user its identity plus 3 of 200 shared features, every row normalised to
sum 1. Reports positives per second per loss and the ratios (one warm-up epoch, then the median
of the timed epochs; the libraries take turns for ``--rounds`` rounds, medians reported, with
each round's ratio beside them).

LightFM is rectools-lightfm in this process; lightfm-next (also imported as ``lightfm``, so in
its own venv ``.bench-venv-next``) is timed the same way by a worker process with that venv's
interpreter (``--lightfm-next-python``, default ``.bench-venv-next/bin/python`` when it exists),
on the same matrices written to a temporary ``.npz`` (see ``_lightfm_worker.py``).
"""

import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import format_table, make_power_law, median_measured, time_repeated, try_import  # noqa: E402
from _lightfm_worker import DEFAULT_NEXT_PYTHON, WorkerPeer  # noqa: E402


def identity_plus_shared(n_rows, n_shared, per_row, seed):
    """CSR (n_rows, n_rows + n_shared): identity, plus ``per_row`` random shared columns; rows sum to 1."""
    rng = np.random.default_rng(seed)
    shared = np.stack([rng.choice(n_shared, size=per_row, replace=False) for _ in range(n_rows)])
    rows = np.repeat(np.arange(n_rows), per_row + 1)
    cols = np.concatenate([np.arange(n_rows)[:, None], n_rows + shared], axis=1).ravel()
    values = np.full(rows.shape[0], 1.0 / (per_row + 1), dtype=np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_rows + n_shared))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--losses", default="warp,bpr,warp-kos,logistic")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of all libraries; medians are reported (per-round ratios spread by a "
                             "third on the shared development VM)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--lightfm-next-python",
                        default=str(DEFAULT_NEXT_PYTHON) if DEFAULT_NEXT_PYTHON.exists() else "",
                        help="interpreter of the venv with lightfm-next (.bench-venv-next); '' = none")
    parser.add_argument("--skip-lightfm-next", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.epochs < 1:
        parser.error("--rounds and --epochs must be >= 1")

    import fastrank

    lightfm = try_import("lightfm")
    lightfm_next = WorkerPeer(None if args.skip_lightfm_next else args.lightfm_next_python)
    data = make_power_law(args.users, args.items, args.interactions, seed=42).tocoo()
    user_features = identity_plus_shared(args.users, 200, 3, seed=1)
    item_features = identity_plus_shared(args.items, 1_000, 5, seed=2)
    print(f"{args.users} users x {args.items} items, {data.nnz} interactions; user features "
          f"{user_features.shape[1]} (identity + 3 of 200), item features {item_features.shape[1]} "
          f"(identity + 5 of 1,000); 64 components, one thread")
    print(f"LightFM: {lightfm.version}; " + ("lightfm-next: skipped" if args.skip_lightfm_next
                                               else lightfm_next.summary()))
    next_data = None
    if lightfm_next.available:
        next_data = lightfm_next.write_data(interactions=data, user_features=user_features,
                                         item_features=item_features)
    def one_round(loss):
        """Positives per second of fastrank, LightFM and lightfm-next (None where not measured),
        each a fresh model timed alike, one after the other; and lightfm-next's status cell."""
        ours = fastrank.FastRank(no_components=64, loss=loss, random_state=0)
        timing = time_repeated(lambda: ours.fit_partial(data, user_features=user_features,
                                                        item_features=item_features, epochs=1),
                               repeats=args.epochs)
        ours_rate = data.nnz / timing.median
        theirs_rate = None
        if lightfm.available:
            peer = lightfm.module.LightFM(no_components=64, loss=loss, random_state=0)
            peer_timing = time_repeated(lambda: peer.fit_partial(data, user_features=user_features,
                                                                 item_features=item_features, epochs=1,
                                                                 num_threads=1),
                                        repeats=args.epochs)
            theirs_rate = data.nnz / peer_timing.median
        next_rate = None
        next_cell = "skipped" if args.skip_lightfm_next else lightfm_next.status
        if lightfm_next.available:
            # the same constructor and fit_partial arguments as the LightFM column, timed alike
            try:
                next_timing = lightfm_next.train_timing(
                    next_data, model={"no_components": 64, "loss": loss, "random_state": 0},
                    fit={"epochs": 1, "num_threads": 1},
                    matrices={"interactions": "interactions", "user_features": "user_features",
                              "item_features": "item_features"},
                    repeats=args.epochs, warmup=1)
                next_rate = data.nnz / next_timing.median
            except RuntimeError as exc:
                next_cell = "error"
                print(exc, file=sys.stderr)
        return ours_rate, theirs_rate, next_rate, next_cell

    measured = {loss: [] for loss in args.losses.split(",")}
    for _ in range(args.rounds):
        for loss in measured:
            measured[loss].append(one_round(loss))
    rows = []
    for loss, rounds in measured.items():
        ours_rate, theirs_rate, next_rate = (median_measured([r[i] for r in rounds]) for i in range(3))
        ratios = [r[0] / r[1] for r in rounds if r[1] is not None]
        rows.append([loss, f"{ours_rate:,.0f}", f"{theirs_rate:,.0f}" if theirs_rate else lightfm.status,
                     f"{next_rate:,.0f}" if next_rate else rounds[-1][3],
                     f"{ours_rate / theirs_rate:.2f}x" if theirs_rate else "-",
                     f"{ours_rate / next_rate:.2f}x" if next_rate else "-",
                     " ".join(f"{ratio:.2f}x" for ratio in ratios) or "-"])
    lightfm_next.close()
    print(format_table(["loss", "fastrank pos/s", "LightFM pos/s", "lightfm-next pos/s", "fastrank/LightFM",
                        "fastrank/lightfm-next", "fastrank/LightFM per round"], rows, markdown=args.markdown))
    print(f"\nMedians over {args.rounds} rounds; each round times every library's fresh model in turn "
          f"(one warm-up + {args.epochs} timed epochs, median), so a slow spell of a shared machine shows "
          "as a spread in the last column instead of one skewed ratio.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
