#!/usr/bin/env python
"""Kernel techniques, each switched off in turn: what each one is worth, measured in one run.

Every row compares fastrank as built (the technique on, where fastrank uses it) with the same
training where one technique is switched off (or, for prefetching on small models, switched on:
fastrank leaves it out there), on the same data, loss and thread count. The switches are the
test hooks of ``fastrank._sgd`` and a feature matrix, so the kernels timed are the shipped ones:

* ``avx2``: the AVX2+FMA inner loops against the baseline (SSE2) ones
  (``_sgd.select_instruction_set``; ``FASTRANK_DISABLE_AVX2=1`` does the same at import);
* ``prefetch``: software prefetching of the next examples' rows, positives and candidates on a
  model larger than the caches, against none (``_sgd.set_prefetch_threshold``);
* ``no prefetch when cached``: a model that stays in one core's caches (MovieLens 100K) trains
  without prefetching; the row shows it with prefetching forced on;
* ``identity fast path``: items without features (a row is its own embedding) against the
  general feature path given the same model as an identity matrix plus one empty column (so it
  is not recognised as the identity: every row is then a one-entry weighted sum);
* ``strata``: several threads on a cached model train in strata (no row written by two threads
  within a round) against Hogwild (``_sgd.set_strata_threshold``).

Each of ``--rounds`` rounds (``--rounds-small`` on MovieLens 100K, whose epochs last
milliseconds) trains a fresh model per cell, one warm-up epoch then the median of ``--epochs``
timed ``fit_partial(epochs=1)`` calls, both cells of a row one after the other, so a slow spell
of a shared machine falls on both. The table gives the median over rounds of each cell and
``off / on``: how many times longer an epoch takes without the technique (above 1: it pays).

    python benchmarks/techniques.py --markdown

Not part of ``make test``; ``benchmarks/run.py`` (``make bench``) runs it.
"""

import argparse
import os
import statistics
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from thread_scaling import load  # noqa: E402  (the training split, as thread_scaling.py trains on)
from train_throughput import LEARNING_RATE, NO_COMPONENTS  # noqa: E402

import fastrank  # noqa: E402
from fastrank import FastRank, _sgd  # noqa: E402

SMALL = "ml100k"
LARGE = "synthetic"


@dataclass
class Variant:
    """One way of training: a label, a switch applied before its cell and undone after it, and
    the item features it trains with."""

    label: str
    switch: Callable[[], Callable[[], None]] = lambda: (lambda: None)
    item_features: Optional[sp.csr_matrix] = None


@dataclass
class Row:
    technique: str
    dataset: str
    loss: str
    threads: int
    on: Variant
    off: Variant
    seconds: Dict[str, List[float]] = field(default_factory=lambda: {"on": [], "off": []})


def instruction_set(allow_avx2: bool):
    """A switch to the AVX2 (when allowed and present) or the baseline inner loops."""
    def switch():
        _sgd.select_instruction_set(allow_avx2)
        return lambda: _sgd.select_instruction_set(fastrank.instruction_set == "avx2")
    return switch


def threshold(setter, size_bytes: int):
    """A switch that sets one of ``_sgd``'s size thresholds and restores its default after."""
    def switch():
        setter(size_bytes)
        return lambda: setter(-1)
    return switch


def identity_plus_empty_column(n_rows: int) -> sp.csr_matrix:
    """The identity with one more, empty, column: the same model as no features, through the
    general feature path (an identity matrix with as many columns as rows would take the fast
    path)."""
    return sp.hstack([sp.identity(n_rows, dtype=np.float32, format="csr"),
                      sp.csr_matrix((n_rows, 1), dtype=np.float32)], format="csr")


def build_rows(data: Dict[str, sp.coo_matrix], avx2: bool, two_threads: bool) -> List[Row]:
    never, always = 2**62, 0
    rows = []
    if avx2:
        for loss in ("bpr", "warp"):
            rows.append(Row("AVX2+FMA inner loops", LARGE, loss, 1,
                            Variant("avx2"), Variant("baseline", instruction_set(False))))
    for loss in ("bpr", "warp"):
        rows.append(Row("prefetch (model beyond the caches)", LARGE, loss, 1, Variant("prefetch"),
                        Variant("no prefetch", threshold(_sgd.set_prefetch_threshold, never))))
    for loss in ("warp", "logistic"):
        rows.append(Row("no prefetch when cached", SMALL, loss, 1, Variant("no prefetch"),
                        Variant("prefetch", threshold(_sgd.set_prefetch_threshold, always))))
    n_items = data[LARGE].shape[1]
    for loss in ("bpr", "warp"):
        rows.append(Row("identity fast path", LARGE, loss, 1, Variant("identity"),
                        Variant("feature path", item_features=identity_plus_empty_column(n_items))))
    if two_threads:
        for loss in ("warp", "bpr", "logistic"):
            rows.append(Row("strata (cached model, 2 threads)", SMALL, loss, 2, Variant("strata"),
                            Variant("Hogwild", threshold(_sgd.set_strata_threshold, 0))))
    return rows


def epoch_seconds(row: Row, variant: Variant, train: sp.coo_matrix, epochs: int, seed: int) -> float:
    """Median of ``epochs`` timed epochs of a fresh model trained the variant's way."""
    restore = variant.switch()
    try:
        model = FastRank(no_components=NO_COMPONENTS, loss=row.loss, learning_rate=LEARNING_RATE,
                         random_state=seed)
        timing = C.time_repeated(
            lambda: model.fit_partial(train, item_features=variant.item_features, epochs=1,
                                      num_threads=row.threads),
            repeats=epochs, warmup=1)
        return timing.median
    finally:
        restore()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds on the power-law set")
    p.add_argument("--rounds-small", type=int, default=15, help="interleaved rounds on MovieLens 100K")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per cell and round (median)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if min(args.rounds, args.rounds_small, args.epochs) < 1:
        p.error("--rounds, --rounds-small and --epochs must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print("# fastrank kernel techniques, each switched off in turn")
    for line in C.environment_summary([C.try_import("fastrank")]):
        print("# " + line)
    avx2 = fastrank.instruction_set == "avx2"
    two_threads = fastrank.openmp_enabled() and (os.cpu_count() or 1) >= 2
    print(f"# inner loops {fastrank.instruction_set}; no_components={NO_COMPONENTS}, "
          f"learning_rate={LEARNING_RATE}, adagrad; per cell a fresh model, 1 warm-up + {args.epochs} "
          f"timed epochs (median); {args.rounds} interleaved rounds ({args.rounds_small} on {SMALL})")
    if not avx2:
        print("# no AVX2 on this machine (or FASTRANK_DISABLE_AVX2 set): the AVX2 rows are left out")
    if not two_threads:
        print("# fewer than 2 cores or no OpenMP: the strata rows are left out")
    data = {name: load(name, args.seed) for name in (LARGE, SMALL)}
    for name, train in data.items():
        print(f"# {name}: train {C.describe_matrix(train)}")
    rows = build_rows(data, avx2, two_threads)
    round_trips = []
    for dataset, rounds in ((LARGE, args.rounds), (SMALL, args.rounds_small)):
        for round_ in range(rounds):
            if dataset == SMALL and two_threads:
                round_trips.append(C.core_round_trip_ns())
            for row in (r for r in rows if r.dataset == dataset):
                for key in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    row.seconds[key].append(epoch_seconds(row, getattr(row, key), data[dataset],
                                                          args.epochs, args.seed + round_))
    table = []
    for row in rows:
        on, off = (statistics.median(row.seconds[k]) for k in ("on", "off"))
        spread = max(max(v) / min(v) for v in row.seconds.values())
        table.append([row.technique, row.dataset, row.loss, row.threads,
                      f"{row.on.label}: {on * 1000:.2f}", f"{row.off.label}: {off * 1000:.2f}",
                      C.fmt_ratio(off / on), f"{spread:.2f}"])
    print()
    print(C.format_table(["technique", "dataset", "loss", "threads", "as built: epoch ms", "switched: epoch ms",
                          "switched / as built", "worst max/min over rounds"], table, markdown=args.markdown))
    print()
    print("switched / as built above 1: epochs take that many times longer without what fastrank does "
          "(for 'no prefetch when cached', with the prefetching it leaves out). Both cells of a row "
          "train the same data from the same seeds; the order of the two alternates between rounds.")
    measured = [t for t in round_trips if t is not None]
    if measured:
        print(f"Cache-line round trip between the first two CPUs (core_latency.c) before each {SMALL} round: "
              f"min {min(measured):.0f} ns, median {statistics.median(measured):.0f} ns, "
              f"max {max(measured):.0f} ns.")
    print(f"# {C.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
