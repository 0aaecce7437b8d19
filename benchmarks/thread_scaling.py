"""Thread scaling of training, fastrank beside LightFM, measured in interleaved rounds.

Each round trains a fresh model per (library, loss, thread count) -- one untimed warm-up epoch,
then ``--epochs`` timed ones -- visiting the thread counts in turn, so that a slow spell of a
shared machine hits every column of a round rather than one column; the table reports the
median over ``--rounds`` rounds (``--rounds-ml100k`` on MovieLens 100K) of each cell's median
epoch, and the speedup over the same library's 1-thread cell. LightFM (rectools-lightfm, when
importable) runs Hogwild too, so its column shows what the machine allows any such trainer,
and whether a weak speedup is the hardware's or fastrank's.

Datasets: ``synthetic`` is the training benchmark's 50,000 x 20,000 power-law set (80% train
split), whose popular items are updated by every thread all the time; ``uniform`` has the same
shape and number of interactions drawn uniformly, so no row is hot (the contrast isolates the
cost of threads writing the same rows); ``ml100k`` is MovieLens 100K, whose 1,682 items fit in
one core's cache, so every update by one thread evicts the row from the other's.

    python benchmarks/thread_scaling.py --threads 1,2,4,8,16 --markdown

Not part of ``make test``; ``benchmarks/run.py`` runs it with the default thread counts.
"""

import argparse
import os
import statistics
import sys
from typing import Dict, List, Tuple

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from train_throughput import LEARNING_RATE, NO_COMPONENTS  # noqa: E402

DATASETS = ("synthetic", "uniform", "ml100k")
LOSSES = ("warp", "bpr", "warp-kos", "logistic")


def default_threads() -> List[int]:
    """1 and 2 threads, plus all cores (``os.cpu_count()``) when that is another number."""
    return list(dict.fromkeys([1, 2, os.cpu_count() or 1]))


def thread_label(threads: int) -> str:
    """Column label of a thread count; the one equal to ``os.cpu_count()`` says "all cores"."""
    cores = os.cpu_count() or 1
    if threads != cores:
        return f"{threads} thr"
    return f"all cores ({cores})" if cores > 2 else f"{threads} thr (all cores)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", type=C.csv_list, default=list(DATASETS), help="subset of " + ",".join(DATASETS))
    p.add_argument("--losses", type=C.csv_list, default=list(LOSSES), help="subset of " + ",".join(LOSSES))
    p.add_argument("--lightfm-losses", type=C.csv_list, default=["warp", "bpr"],
                   help="losses LightFM is also timed for ('' for none; it is ~5-10x slower per epoch)")
    p.add_argument("--threads", type=C.csv_ints, default=None,
                   help="thread counts (the first must be 1); default 1, 2 and all cores")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--rounds-ml100k", type=int, default=15,
                   help="rounds for ml100k, whose epochs last milliseconds: one disturbed moment of a "
                        "shared machine moves a cell of 3 rounds, and 15 rounds take seconds")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per cell and round (median)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    args.threads = list(dict.fromkeys(args.threads or default_threads()))
    bad = [d for d in args.datasets if d not in DATASETS] + [
        loss for loss in args.losses + args.lightfm_losses if loss not in LOSSES]
    if bad:
        p.error(f"unknown dataset or loss: {', '.join(bad)}")
    if args.threads[0] != 1 or min(args.threads) < 1:
        p.error("--threads must start with 1 (the baseline) and hold positive integers")
    if args.rounds < 1 or args.rounds_ml100k < 1 or args.epochs < 1:
        p.error("--rounds, --rounds-ml100k and --epochs must be >= 1")
    return args


def uniform_like(matrix: sp.coo_matrix, seed: int) -> sp.coo_matrix:
    """As many distinct (user, item) pairs as ``matrix`` holds, uniform over its shape."""
    rng = np.random.default_rng(seed)
    n_users, n_items = matrix.shape
    wanted = matrix.nnz
    codes = np.unique(rng.integers(0, n_users * n_items, size=int(wanted * 1.01) + 100, dtype=np.int64))
    rng.shuffle(codes)  # np.unique sorts: shuffle before keeping ``wanted`` of them
    codes = codes[:wanted]
    return sp.coo_matrix((np.ones(codes.size, dtype=np.float32), (codes // n_items, codes % n_items)),
                         shape=matrix.shape)


def load(name: str, seed: int) -> sp.coo_matrix:
    """The training split of a dataset (the same 80% the training benchmark trains on)."""
    full = C.load_ml100k() if name == "ml100k" else C.make_power_law(50_000, 20_000, 1_000_000, seed=seed)
    train, _ = C.holdout_split(full, 0.2, seed)
    return uniform_like(train, seed) if name == "uniform" else train


def epoch_seconds(make_model, data: sp.coo_matrix, threads: int, epochs: int) -> float:
    """Median wall time of ``epochs`` timed epochs of a fresh model, after one warm-up epoch."""
    model = make_model()
    return C.time_repeated(lambda: model.fit_partial(data, epochs=1, num_threads=threads),
                           repeats=epochs, warmup=1).median


def main(argv=None) -> int:
    args = parse_args(argv)
    fastrank = C.try_import("fastrank")
    lightfm = C.try_import("lightfm")
    if not fastrank.available:
        print(f"fastrank is not importable: {fastrank.error}", file=sys.stderr)
        return 1
    print("# thread scaling")
    for line in C.environment_summary([fastrank, lightfm]):
        print("# " + line)
    print(f"# {args.rounds} interleaved rounds ({args.rounds_ml100k} on ml100k); per cell a fresh model, "
          f"1 warm-up + {args.epochs} timed epochs (median); no_components={NO_COMPONENTS}, "
          f"learning_rate={LEARNING_RATE}, adagrad")
    libraries = {"fastrank": lambda loss: fastrank.module.FastRank(
        no_components=NO_COMPONENTS, loss=loss, learning_rate=LEARNING_RATE, random_state=args.seed)}
    if lightfm.available and args.lightfm_losses:
        libraries["LightFM"] = lambda loss: lightfm.module.LightFM(
            no_components=NO_COMPONENTS, loss=loss, learning_rate=LEARNING_RATE, random_state=args.seed)
    seconds: Dict[Tuple[str, str, str, int], List[float]] = {}
    for dataset in args.datasets:
        data = load(dataset, args.seed)
        print(f"# {dataset}: {C.describe_matrix(data)}", flush=True)
        rounds = args.rounds_ml100k if dataset == "ml100k" else args.rounds
        round_trips = []  # core-to-core, before each round and after the last
        for round_index in range(rounds):
            round_trips.append(C.core_round_trip_ns())
            for loss in args.losses:
                for library, make in libraries.items():
                    if library != "fastrank" and loss not in args.lightfm_losses:
                        continue
                    for threads in args.threads:
                        value = epoch_seconds(lambda: make(loss), data, threads, args.epochs)
                        seconds.setdefault((dataset, loss, library, threads), []).append(value)
            if rounds <= 5 or (round_index + 1) % 5 == 0:
                print(f"#   round {round_index + 1}/{rounds} done (core round trip before it: "
                      f"{C.format_round_trip(round_trips[-1])})", flush=True)
        round_trips.append(C.core_round_trip_ns())
        rows = []
        for loss in args.losses:
            for library in libraries:
                cells = [seconds.get((dataset, loss, library, t)) for t in args.threads]
                if cells[0] is None:
                    continue
                base = statistics.median(cells[0])
                row = [loss, library]
                for threads, values in zip(args.threads, cells):
                    median = statistics.median(values)
                    row.append(f"{data.nnz / median:,.0f} ({base / median:.2f}x)")
                row.append(f"{max(max(values) / min(values) for values in cells):.2f}")
                rows.append(row)
        headers = ["loss", "library"] + [f"{thread_label(t)}: pos/s (speedup)" for t in args.threads] + [
            "worst max/min over rounds"]
        print(f"\n## {dataset}\n")
        print(C.format_table(headers, rows, markdown=args.markdown))
        measured = [value for value in round_trips if value is not None]
        if measured:
            print(f"\nCache-line round trip between the first two CPUs (core_latency.c), before each round and "
                  f"after the last: min {min(measured):.0f} ns, median {statistics.median(measured):.0f} ns, "
                  f"max {max(measured):.0f} ns.")
    print("\nNote: speedup = the library's 1-thread median epoch time / this cell's. The last column is the\n"
          "largest ratio of slowest to fastest round among the row's cells: how noisy the row is.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
