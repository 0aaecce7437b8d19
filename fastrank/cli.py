"""The ``fastrank`` command (also ``python -m fastrank``)."""

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp


def synthetic_interactions(n_users=2000, n_items=1000, n_tastes=8, per_user=30, seed=0):
    """Implicit feedback drawn from latent tastes with skewed item popularity.

    Each user and item gets a taste vector; a user picks ``per_user`` distinct items with
    probability proportional to ``exp(3 * taste_u . taste_i) * popularity_i``, where popularity
    follows a power law. Returns (train, test) COO matrices of shape (n_users, n_items), an 80/20
    random split of the picked pairs.
    """
    rng = np.random.default_rng(seed)
    user_tastes = rng.normal(size=(n_users, n_tastes)) / np.sqrt(n_tastes)
    item_tastes = rng.normal(size=(n_items, n_tastes)) / np.sqrt(n_tastes)
    popularity = (np.arange(n_items) + 1.0) ** -0.7
    rows, cols = [], []
    for user in range(n_users):
        weights = np.exp(3.0 * item_tastes @ user_tastes[user]) * popularity
        items = rng.choice(n_items, size=per_user, replace=False, p=weights / weights.sum())
        rows.append(np.full(per_user, user))
        cols.append(items)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    test = rng.random(rows.shape[0]) < 0.2
    ones = np.ones(rows.shape[0], dtype=np.float32)

    def matrix(mask):
        return sp.coo_matrix((ones[mask], (rows[mask], cols[mask])), shape=(n_users, n_items))

    return matrix(~test), matrix(test)


def run_demo(args):
    from fastrank import FastRank
    from fastrank.evaluation import auc_score, precision_at_k

    train, test = synthetic_interactions(seed=args.seed)
    print(f"Synthetic data: {train.shape[0]} users x {train.shape[1]} items, "
          f"{train.nnz} train / {test.nnz} test interactions")
    print(f"{'loss':<10} {'p@10':>7} {'AUC':>7} {'fit s':>7}")
    for loss in ("warp", "bpr", "warp-kos", "logistic"):
        model = FastRank(no_components=32, loss=loss, random_state=args.seed)
        start = time.perf_counter()
        model.fit(train, epochs=args.epochs, num_threads=args.threads)
        elapsed = time.perf_counter() - start
        precision = precision_at_k(model, test, train, k=10, num_threads=args.threads).mean()
        auc = auc_score(model, test, train, num_threads=args.threads).mean()
        print(f"{loss:<10} {precision:7.3f} {auc:7.3f} {elapsed:7.2f}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastrank", description="Fast hybrid recommender.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train every loss on built-in synthetic data and print metrics")
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--threads", type=int, default=1)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
