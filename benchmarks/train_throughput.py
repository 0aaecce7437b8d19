#!/usr/bin/env python
"""Training-throughput benchmark: fastrank vs LightFM vs lightfm-next vs implicit.

In one run this script

1. trains fastrank and LightFM (package ``rectools-lightfm``, imported as
   ``lightfm``) with identical settings (``no_components=64``,
   ``learning_rate=0.05``, default adagrad schedule, one thread, fixed
   ``random_state``) for every requested loss and reports training
   throughput in positives per second; lightfm-next (which also imports as
   ``lightfm``, so it lives in ``.bench-venv-next``) is measured the same way
   in a worker process with that venv's interpreter (``--lightfm-next-python``,
   default ``.bench-venv-next/bin/python`` when it exists), on the same
   matrices passed through a temporary ``.npz``, right after LightFM's cell;
   the whole table is measured ``--rounds`` times (every row once per round)
   and reports the median of each cell with every round's ratio beside it;
2. compares fastrank's BPR (default adagrad, and its cheapest schedule, plain
   ``learning_schedule="sgd"`` at ``learning_rate=0.1``) with implicit's CPU BPR
   at the same ``no_components``.

Thread scaling is ``thread_scaling.py``'s: it measures 1 and 2 threads in
interleaved rounds, so that a slow spell of a shared machine cannot fall on one
thread count only (a one-shot table here once showed 1.07x and once 4.15x for
the same kernel).

Throughput is ``nnz / epoch_seconds`` where ``nnz`` is the number of positive
interactions in the training matrix and ``epoch_seconds`` the wall time
(``time.perf_counter``) of one ``fit_partial(interactions, epochs=1,
num_threads=T)`` call. Every model gets one untimed warm-up epoch first,
then ``--epochs`` timed epochs, summarised by ``--stat`` (best or median).

Accuracy: every data set is split once into a random 80% train / 20% test of
its interactions; every library trains on the same train matrix and, after its
warm-up + timed epochs, is scored on the test split by one shared function
(``_common.holdout_accuracy``: precision@10 and AUC from the model's factors,
training items excluded, ties pessimistic; a fixed sample of 2,000 users of the
power-law set), reported next to its throughput.

Peers that are not installed are reported as "not installed", so the script
also runs in fastrank's own virtual environment. The side-by-side run needs
the peer environment created by ``benchmarks/make_peer_venv.sh``::

    .bench-venv/bin/python benchmarks/train_throughput.py
    .bench-venv/bin/python benchmarks/train_throughput.py --datasets ml100k --markdown

Data: MovieLens 100k from ``$FASTRANK_DATA/ml-100k/u.data`` (else
``../shared/data/ml-100k/u.data`` relative to the repository root), ratings
>= 4 as positives; and a seeded synthetic power-law matrix (50,000 users x
20,000 items x 1,000,000 unique positives by default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import statistics
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402  (sets BLAS thread env vars before numpy)
from _lightfm_worker import load_arrays, DEFAULT_NEXT_PYTHON, WorkerPeer  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ALL_LOSSES = ("warp", "bpr", "warp-kos", "logistic")
ALL_DATASETS = ("ml100k", "synthetic")

NO_COMPONENTS = 64
LEARNING_RATE = 0.05
HOLDOUT_FRACTION = 0.2
# the power-law set has 50,000 users: accuracy is measured on a fixed random sample of them
EVALUATED_USERS = 2000
# implicit's own default learning_rate (this script gives it LEARNING_RATE, like every other model)
IMPLICIT_DEFAULT_LEARNING_RATE = 0.01
# fastrank BPR rows of the implicit table: the default schedule, and the cheapest one (plain SGD
# like implicit, no optimizer state) at a learning rate where it reaches good accuracy on ml-100k
SGD_LEARNING_RATE = 0.1
# (library name in the --json records, row label, FastRank arguments over the defaults)
FASTRANK_BPR_VARIANTS = (
    (f"fastrank adagrad, lr={LEARNING_RATE}", f"fastrank bpr, adagrad (default schedule), lr={LEARNING_RATE}", {}),
    (f"fastrank sgd, lr={SGD_LEARNING_RATE}", f"fastrank bpr, sgd (cheapest schedule), lr={SGD_LEARNING_RATE}",
     {"learning_schedule": "sgd", "learning_rate": SGD_LEARNING_RATE}),
)
ACCURACY_NOTE = (
    "Note: p@10 / AUC = test precision@10 and AUC on a random {holdout:.0%} of the interactions, held out\n"
    "before training (seed {seed}); every library trains on the same other {train:.0%} (pos/s = train nnz /\n"
    "epoch seconds) and is scored after the {epochs} epochs ({warmup} warm-up + {timed} timed) it was trained for.\n"
    "One shared implementation (benchmarks/_common.py holdout_accuracy) scores every library from its\n"
    "factors (embeddings and biases; implicit: its factors+1 columns) in numpy: training items are not\n"
    "candidates, ties count against the test item in both metrics (pessimistic), precision divides\n"
    "the hits by 10.\n"
    "Users scored: {users}.")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
    """
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--datasets", type=C.csv_list, default=list(ALL_DATASETS),
                   help="comma-separated subset of: " + ",".join(ALL_DATASETS))
    p.add_argument("--losses", type=C.csv_list, default=list(ALL_LOSSES),
                   help="comma-separated subset of: " + ",".join(ALL_LOSSES))
    p.add_argument("--epochs", type=int, default=3,
                   help="timed epochs per model (after one warm-up epoch)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up epochs per model")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of the first table (each row once per round, every library a fresh "
                        "model); its pos/s are medians over the rounds")
    p.add_argument("--interleaved-models", type=int, default=5,
                   help="interleaved table: fresh model pairs per row on ml100k (0 = no such table)")
    p.add_argument("--interleaved-models-synthetic", type=int, default=2,
                   help="the same on the synthetic set, whose LightFM epochs take seconds")
    p.add_argument("--stat", choices=("best", "median"), default="median",
                   help="how the timed epochs are summarised")
    p.add_argument("--seed", type=int, default=42, help="random_state of every model")
    p.add_argument("--data-seed", type=int, default=42, help="seed of the synthetic generator")
    p.add_argument("--synthetic-users", type=int, default=50_000)
    p.add_argument("--synthetic-items", type=int, default=20_000)
    p.add_argument("--synthetic-nnz", type=int, default=1_000_000)
    p.add_argument("--skip-fastrank", action="store_true", help="do not run fastrank")
    p.add_argument("--skip-lightfm", action="store_true", help="do not run LightFM")
    p.add_argument("--skip-implicit", action="store_true", help="do not run implicit")
    p.add_argument("--lightfm-next-python", default=str(DEFAULT_NEXT_PYTHON) if DEFAULT_NEXT_PYTHON.exists() else "",
                   help="interpreter of the venv with lightfm-next (benchmarks/make_peer_venv.sh makes "
                        ".bench-venv-next); its column is measured in a worker process with it; '' = none")
    p.add_argument("--skip-lightfm-next", action="store_true", help="do not run lightfm-next")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--json", type=Path, default=None, help="also write raw timings to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no per-measurement progress on stderr")
    args = p.parse_args(argv)

    bad = [d for d in args.datasets if d not in ALL_DATASETS]
    if bad:
        p.error(f"unknown dataset(s) {bad}; choose from {ALL_DATASETS}")
    bad = [x for x in args.losses if x not in ALL_LOSSES]
    if bad:
        p.error(f"unknown loss(es) {bad}; choose from {ALL_LOSSES}")
    if args.epochs < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("--epochs and --rounds must be >= 1 and --warmup >= 0")
    if args.interleaved_models < 0 or args.interleaved_models_synthetic < 0:
        p.error("--interleaved-models and --interleaved-models-synthetic must be >= 0")
    return args


# ---------------------------------------------------------------------------
# Model factories: each returns a zero-argument "run one epoch" callable
# ---------------------------------------------------------------------------


def fastrank_epoch(mod, loss: str, seed: int, interactions: sp.coo_matrix, threads: int,
                   **params) -> Callable[[], None]:
    """Build a fresh fastrank model and return a one-epoch training step (``step.model`` is the
    model); ``params`` override the defaults (adagrad, ``LEARNING_RATE``)."""
    settings = dict(no_components=NO_COMPONENTS, loss=loss, learning_rate=LEARNING_RATE, random_state=seed)
    settings.update(params)
    model = mod.FastRank(**settings)
    schedule = getattr(model, "learning_schedule", "adagrad")
    expected = params.get("learning_schedule", "adagrad")
    if schedule != expected:
        raise RuntimeError(f"fastrank learning_schedule is {schedule!r}, expected {expected!r}")

    def step() -> None:
        model.fit_partial(interactions, epochs=1, num_threads=threads)

    step.model = model
    return step


def lightfm_kwargs(loss: str, seed: int) -> Dict:
    """LightFM constructor arguments, the same for the LightFM and lightfm-next columns."""
    return dict(no_components=NO_COMPONENTS, loss=loss, learning_rate=LEARNING_RATE,
                learning_schedule="adagrad", random_state=seed)


def lightfm_epoch(mod, loss: str, seed: int, interactions: sp.coo_matrix, threads: int) -> Callable[[], None]:
    """Build a fresh LightFM model and return a one-epoch training step."""
    model = mod.LightFM(**lightfm_kwargs(loss, seed))

    def step() -> None:
        model.fit_partial(interactions, epochs=1, num_threads=threads)

    step.model = model
    return step


def implicit_bpr_epoch(mod, seed: int, user_items: sp.csr_matrix, threads: int) -> Callable[[], None]:
    """Build a fresh implicit CPU BPR model and return a one-epoch step.

    ``fit`` continues from the current factors when called again, so each
    call with ``iterations=1`` is one more epoch of ``nnz`` SGD samples.
    implicit stores ``factors + 1`` columns (the extra one is the item bias).
    Regularization is set to 0 to match LightFM/fastrank's default
    ``item_alpha = user_alpha = 0``. ``random_state`` is a numpy Generator,
    not the int: implicit makes a new generator from an int on every ``fit``
    call, so every epoch would redraw the same samples; with one Generator,
    N calls of ``fit(iterations=1)`` are the same training as one
    ``fit(iterations=N)``.
    """
    model = mod.BayesianPersonalizedRanking(
        factors=NO_COMPONENTS, learning_rate=LEARNING_RATE, regularization=0.0,
        iterations=1, num_threads=threads, random_state=np.random.default_rng(seed),
    )

    def step() -> None:
        model.fit(user_items, show_progress=False)

    step.model = model
    return step


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------


class Bench:
    """Runs measurements and keeps their results."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.records: List[Dict] = []
        self.last_model = None

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def measure(self, library: str, dataset: str, loss: str, threads: int, nnz: int,
                make_step: Optional[Callable[[], Callable[[], None]]] = None,
                timing_of: Optional[Callable[[], C.Timing]] = None,
                settings: Optional[Dict] = None) -> Optional[float]:
        """Time one (library, dataset, loss, threads) cell.

        Either ``make_step`` (returns a one-epoch callable, timed here) or ``timing_of`` (returns
        the ``C.Timing`` of the same warm-up + timed epochs measured elsewhere: the lightfm-next
        worker process) is given. ``settings`` (e.g. schedule, learning rate) go into the record.

        Returns
        -------
        float or None
            Positives per second according to ``--stat``; None on error.
        """
        rec = {"library": library, "dataset": dataset, "loss": loss,
               "threads": threads, "nnz": nnz, **(settings or {})}
        # cleared first, so a failed cell never reports the previous cell's model
        self.last_model = None
        try:
            if timing_of is not None:
                timing = timing_of()
            else:
                step = make_step()
                timing = C.time_repeated(step, repeats=self.args.epochs, warmup=self.args.warmup)
                self.last_model = getattr(step, "model", None)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
            self.records.append(rec)
            self.log(f"  {library:12s} {dataset:9s} {loss:9s} t={threads}: ERROR {rec['error']}")
            if not self.args.quiet:
                traceback.print_exc(file=sys.stderr)
            return None
        sec = timing.stat(self.args.stat)
        rate = nnz / sec
        rec.update(seconds=timing.seconds, warmup_seconds=timing.warmup_seconds,
                   epoch_seconds=sec, positives_per_s=rate)
        self.records.append(rec)
        self.log(f"  {library:12s} {dataset:9s} {loss:9s} t={threads}: warm-up "
                 + " ".join(f"{s:.3f}s" for s in timing.warmup_seconds)
                 + " | timed " + " ".join(f"{s:.3f}s" for s in timing.seconds)
                 + f" -> {C.fmt_rate(rate)} pos/s")
        return rate


    def accuracy(self, vectors, holdout) -> str:
        """``p@10 / AUC`` of trained factors on the held-out split (recorded with the last cell).

        ``vectors`` is (user vectors, item vectors, item biases or None, user biases or None), or
        None when the cell failed; ``holdout`` is (train, test, users evaluated at most)."""
        if vectors is None:
            return "-"
        user_vectors, item_vectors, item_biases, user_biases = vectors
        train, test, max_users = holdout
        try:
            precision, auc, n_users = C.holdout_accuracy(user_vectors, item_vectors, item_biases, train, test,
                                                         k=10, max_users=max_users, user_biases=user_biases)
        except Exception as exc:
            if self.records:
                self.records[-1]["accuracy_error"] = f"{type(exc).__name__}: {exc}"
            self.log(f"  accuracy: ERROR {type(exc).__name__}: {exc}")
            return "error"
        if self.records:
            self.records[-1].update(test_precision_at_10=precision, test_auc=auc, evaluated_users=n_users)
        self.log(f"    test p@10 {precision:.4f}, AUC {auc:.4f} ({n_users} users)")
        return f"{precision:.3f} / {auc:.3f}"


def factor_vectors(model) -> Optional[tuple]:
    """(user vectors, item vectors, item biases, user biases) of a trained model, as numpy arrays.

    fastrank and LightFM (identity features): ``user_embeddings``, ``item_embeddings``,
    ``item_biases``, ``user_biases``. implicit BPR keeps ``factors + 1`` columns instead: the user
    factors end in a column of ones and the item factors in the item bias (checked in 0.7.3), so
    their product is the score with the item bias; GPU builds hold ``implicit.gpu`` matrices,
    read with ``to_numpy()``.
    """
    if model is None:
        return None
    if hasattr(model, "item_embeddings"):
        return model.user_embeddings, model.item_embeddings, model.item_biases, model.user_biases
    user_factors, item_factors = model.user_factors, model.item_factors
    if hasattr(user_factors, "to_numpy"):
        user_factors, item_factors = user_factors.to_numpy(), item_factors.to_numpy()
    return user_factors, item_factors, None, None


def accuracy_note(args: argparse.Namespace, holdout: Dict[str, tuple]) -> str:
    """The note under the first table: how p@10 / AUC are measured, and on which users."""
    users = []
    for name, (_, test, max_users) in holdout.items():
        with_test = int((np.diff(test.tocsr().indptr) > 0).sum())
        if max_users is not None and with_test > max_users:
            users.append(f"{name}: a fixed random sample of {max_users:,} of its {with_test:,} test users")
        else:
            users.append(f"{name}: all {with_test:,} test users")
    return ACCURACY_NOTE.format(holdout=HOLDOUT_FRACTION, train=1 - HOLDOUT_FRACTION, seed=args.data_seed,
                                epochs=args.warmup + args.epochs, warmup=args.warmup, timed=args.epochs,
                                users="; ".join(users))


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b is not None and b > 0 else None


def _cell(rate: Optional[float], mod: C.OptionalModule, skipped: bool) -> str:
    if skipped:
        return "skipped"
    if not mod.available:
        return mod.status
    return C.fmt_rate(rate) if rate is not None else "error"


def in_rounds(n_rounds: int, cells: List, measure: Callable) -> tuple:
    """Measure every cell once per round, ``n_rounds`` rounds, so that a slow spell of a shared
    machine spreads over the cells' rounds instead of falling on one cell.

    ``measure(cell, last)`` returns ``(rates, accuracy)``; ``last`` is True in the last round, the
    one whose accuracy is kept. Returns ``{cell: [rates of each round]}`` and ``{cell: accuracy}``.
    """
    per_round: Dict = {}
    accuracies: Dict = {}
    for round_index in range(n_rounds):
        last = round_index == n_rounds - 1
        for cell in cells:
            rates, accuracy = measure(cell, last)
            per_round.setdefault(cell, []).append(rates)
            if last:
                accuracies[cell] = accuracy
    return per_round, accuracies


def interleaved_rows(args: argparse.Namespace, data: Dict[str, sp.coo_matrix], csrs: Dict[str, sp.csr_matrix],
                     fastrank_module, lightfm_module, implicit_module) -> None:
    """Print the interleaved table: fastrank's speed over its peer's, epoch by epoch.

    For each row, ``--interleaved-models`` times (``--interleaved-models-synthetic`` on the
    synthetic set) a fresh fastrank model and a fresh peer model train their warm-up epochs,
    then their timed epochs in turns (``_common.time_interleaved``: one epoch of each, right
    after one another, the order alternating), and each turn gives one ratio. The table reports
    the median ratio with the smallest and largest; the first table's ratio divides medians taken
    seconds to minutes apart, which a slow spell of a shared machine can move by half.
    """
    if fastrank_module is None or (lightfm_module is None and implicit_module is None):
        return
    comparisons = []
    for ds in args.datasets:
        for loss in args.losses if lightfm_module is not None else ():
            comparisons.append((ds, f"{loss} vs LightFM",
                                lambda ds=ds, loss=loss: fastrank_epoch(fastrank_module, loss, args.seed, data[ds], 1),
                                lambda ds=ds, loss=loss: lightfm_epoch(lightfm_module, loss, args.seed, data[ds], 1)))
        for label, _, params in FASTRANK_BPR_VARIANTS if implicit_module is not None else ():
            comparisons.append((ds, f"bpr ({label.replace('fastrank ', '')}) vs implicit",
                                lambda ds=ds, params=params: fastrank_epoch(fastrank_module, "bpr", args.seed,
                                                                            csrs[ds], 1, **params),
                                lambda ds=ds: implicit_bpr_epoch(implicit_module, args.seed, csrs[ds], 1)))
    rows = []
    for ds, label, make_ours, make_theirs in comparisons:
        n_models = args.interleaved_models if ds == "ml100k" else args.interleaved_models_synthetic
        if n_models == 0:
            continue
        ratios, ours_seconds, theirs_seconds = [], [], []
        try:
            for _ in range(n_models):
                ours, theirs = C.time_interleaved([make_ours(), make_theirs()], repeats=args.epochs,
                                                  warmup=args.warmup)
                ratios += C.turn_ratios(theirs, ours)
                ours_seconds += ours.seconds
                theirs_seconds += theirs.seconds
        except Exception as exc:
            rows.append([ds, label, "error", "error", f"{type(exc).__name__}: {exc}", "-"])
            continue
        nnz = data[ds].nnz
        rows.append([ds, label, C.fmt_rate(nnz / statistics.median(ours_seconds)),
                     C.fmt_rate(nnz / statistics.median(theirs_seconds)), C.fmt_spread(ratios), len(ratios)])
    if not rows:
        return
    print("## fastrank vs its peers, 1 thread, interleaved epochs")
    print(C.format_table(["dataset", "comparison", "fastrank pos/s", "peer pos/s",
                          "fastrank/peer per turn: median (min-max)", "turns"], rows, args.markdown))
    print()
    print(f"Note: per row, {args.interleaved_models} (ml100k) or {args.interleaved_models_synthetic} (synthetic) "
          f"pairs of fresh models (same settings as the tables\naround it), {args.warmup} warm-up epoch(s) each, "
          f"then {args.epochs} turns of one timed epoch of each model right after\n"
          "the other (order alternating), so both epochs of a turn mostly fall in the same spell of the\n"
          "shared machine; each turn gives one ratio of epoch times (peer / fastrank). pos/s are the\n"
          "medians of the timed epochs. The peers are the in-process ones (LightFM 1.17.3, implicit).")
    print()


def load_datasets(args: argparse.Namespace, bench: Bench) -> Dict[str, sp.coo_matrix]:
    """Load every dataset needed by the benchmark tables."""
    data = {}
    for name in args.datasets:
        if name == "ml100k":
            data[name] = C.load_ml100k()
        else:
            data[name] = C.make_power_law(args.synthetic_users, args.synthetic_items,
                                          args.synthetic_nnz, seed=args.data_seed)
    return data


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)

    fr = C.try_import("fastrank")
    lfm = C.try_import("lightfm")
    imp = C.try_import("implicit.cpu.bpr")
    imp_pkg = C.try_import("implicit")
    nxt = WorkerPeer(None if args.skip_lightfm_next else args.lightfm_next_python)

    print("# fastrank training throughput")
    for line in C.environment_summary([fr, lfm, imp_pkg]):
        print("# " + line)
    print("# " + ("lightfm-next: skipped" if args.skip_lightfm_next else nxt.summary()))
    for mod in (fr, lfm, imp):
        if mod.status == "import failed":
            print(f"# {mod.name}: {mod.error}")
    print(f"# settings: no_components={NO_COMPONENTS}, learning_rate={LEARNING_RATE}, "
          f"adagrad, random_state={args.seed}; {args.warmup} warm-up + {args.epochs} timed "
          f"epochs per model, {args.stat} epoch reported; the implicit table adds fastrank BPR with "
          f"learning_schedule='sgd', learning_rate={SGD_LEARNING_RATE}")

    run_fr = fr.available and not args.skip_fastrank
    run_lfm = lfm.available and not args.skip_lightfm
    run_imp = imp.available and not args.skip_implicit
    run_next = nxt.available and not args.skip_lightfm_next

    data, holdout = {}, {}
    for name, full in load_datasets(args, bench).items():
        # every library trains on the same 80% and is scored on the same held-out 20%
        train, test = C.holdout_split(full, HOLDOUT_FRACTION, seed=args.data_seed)
        data[name] = train
        holdout[name] = (train, test, None if name == "ml100k" else EVALUATED_USERS)
        print(f"# {name}: train {C.describe_matrix(train)}; test {test.nnz} interactions")
    print()

    # ---- table 1: fastrank vs LightFM (and lightfm-next), one thread ----------
    def table_one_row(ds, loss, next_data, with_accuracy):
        """One round of a row: each library's fresh model timed in turn; accuracy when asked."""
        mat = data[ds]
        rates = {"fastrank": None, "lightfm": None, "lightfm-next": None}
        accuracy = {"fastrank": "-", "lightfm": "-", "lightfm-next": "-"}
        if run_fr:
            rates["fastrank"] = bench.measure("fastrank", ds, loss, 1, mat.nnz,
                                              lambda: fastrank_epoch(fr.module, loss, args.seed, mat, 1))
            if with_accuracy:
                accuracy["fastrank"] = bench.accuracy(factor_vectors(bench.last_model), holdout[ds])
        if run_lfm:
            rates["lightfm"] = bench.measure("lightfm", ds, loss, 1, mat.nnz,
                                             lambda: lightfm_epoch(lfm.module, loss, args.seed, mat, 1))
            if with_accuracy:
                accuracy["lightfm"] = bench.accuracy(factor_vectors(bench.last_model), holdout[ds])
        if run_next:
            # the worker saves the trained parameters; the parent scores them like the others
            saved = next_data + ".parameters.npz"
            if os.path.exists(saved):
                os.remove(saved)
            rates["lightfm-next"] = bench.measure(
                "lightfm-next", ds, loss, 1, mat.nnz,
                timing_of=lambda: nxt.train_timing(
                    next_data, model=lightfm_kwargs(loss, args.seed), fit={"epochs": 1, "num_threads": 1},
                    matrices={"interactions": "interactions"}, repeats=args.epochs, warmup=args.warmup,
                    save_parameters=saved))
            if rates["lightfm-next"] is not None and with_accuracy:
                arrays = load_arrays(saved)
                accuracy["lightfm-next"] = bench.accuracy(
                    (arrays["user_embeddings"], arrays["item_embeddings"], arrays["item_biases"],
                     arrays.get("user_biases")), holdout[ds])
        return rates, accuracy

    # lightfm-next gets the very same COO matrix (format, dtypes) through a temporary .npz
    next_files = {ds: nxt.write_data(interactions=data[ds]) if run_next else None for ds in args.datasets}
    rounds, accuracies = in_rounds(
        args.rounds, [(ds, loss) for ds in args.datasets for loss in args.losses],
        lambda cell, last: table_one_row(cell[0], cell[1], next_files[cell[0]], with_accuracy=last))

    rows = []
    for ds in args.datasets:
        for loss in args.losses:
            per_round = rounds[(ds, loss)]
            fr_rate, lfm_rate, next_rate = (C.median_measured([r[name] for r in per_round])
                                            for name in ("fastrank", "lightfm", "lightfm-next"))
            accuracy = accuracies[(ds, loss)]
            rows.append([ds, loss,
                         _cell(fr_rate, fr, args.skip_fastrank),
                         _cell(lfm_rate, lfm, args.skip_lightfm),
                         _cell(next_rate, nxt, args.skip_lightfm_next),
                         C.fmt_ratio(_ratio(fr_rate, lfm_rate)),
                         C.fmt_ratio(_ratio(fr_rate, next_rate)),
                         " ".join(C.fmt_ratio(_ratio(r["fastrank"], r["lightfm"])) for r in per_round),
                         accuracy["fastrank"], accuracy["lightfm"], accuracy["lightfm-next"]])
    nxt.close()
    print("## fastrank vs LightFM and lightfm-next, 1 thread (positives/s = nnz / epoch seconds)")
    print(C.format_table(["dataset", "loss", "fastrank pos/s", "LightFM pos/s", "lightfm-next pos/s",
                          "fastrank/LightFM", "fastrank/lightfm-next", "fastrank/LightFM per round",
                          "fastrank p@10 / AUC",
                          "LightFM p@10 / AUC", "lightfm-next p@10 / AUC"],
                         rows, args.markdown))
    print()
    print(accuracy_note(args, holdout))
    print(f"Note: pos/s are medians over {args.rounds} rounds (every row once per round, each library a\n"
          "fresh model timed after the other's), so a slow spell of the shared machine shows as a spread\n"
          "in the per-round column rather than as one skewed ratio; p@10 / AUC are the last round's.")
    print("Note: LightFM is rectools-lightfm, timed in this process; lightfm-next is timed the same way\n"
          "(fresh model, same arguments, warm-up + timed fit_partial(epochs=1) calls, same statistic)\n"
          "in a worker process with .bench-venv-next's interpreter on the same matrix, right after\n"
          "LightFM's cell.")
    if "warp-kos" in args.losses:
        print("Note: warp-kos visits nnz examples per epoch in both libraries (LightFM 1.17.3's\n"
              "fit_warp_kos loops over the shuffled interactions and uses each one's user); each\n"
              "visit samples k positives of that user and ranks them, so the rows report\n"
              "nnz / epoch seconds like the other losses.")
    if "warp" in args.losses:
        print("Note: WARP (and warp-kos) epoch cost grows as the model improves (more negatives are\n"
              "sampled before a violation is found), so WARP rates depend on the training stage.")
    print()

    # ---- table 1b: the same ratios from interleaved epochs -------------------
    # Every CSR is built once here, outside any timed call (implicit requires one; table 2 uses them too).
    csrs = {ds: data[ds].tocsr() for ds in args.datasets}
    interleaved_rows(args, data, csrs, fr.module if run_fr else None, lfm.module if run_lfm else None,
                     imp.module if run_imp else None)

    # ---- table 2: fastrank BPR vs implicit BPR ------------------------------
    # Measured in rounds like table 1 (in_rounds), each model fresh and timed right after the other's.
    def table_two_round(ds, csr, with_accuracy):
        """One round of a data set's rows: implicit's, then each fastrank variant's."""
        rates, accuracy = {}, {}
        if run_imp:
            rates["implicit"] = bench.measure("implicit", ds, "bpr", 1, csr.nnz,
                                              lambda: implicit_bpr_epoch(imp.module, args.seed, csr, 1),
                                              settings={"learning_schedule": "sgd", "learning_rate": LEARNING_RATE})
            if with_accuracy and rates["implicit"] is not None:
                accuracy["implicit"] = bench.accuracy(factor_vectors(bench.last_model), holdout[ds])
        for library, label, params in FASTRANK_BPR_VARIANTS if run_fr else ():
            settings = {"learning_schedule": params.get("learning_schedule", "adagrad"),
                        "learning_rate": params.get("learning_rate", LEARNING_RATE)}
            rates[label] = bench.measure(library, ds + " (csr)", "bpr", 1, csr.nnz,
                                         lambda: fastrank_epoch(fr.module, "bpr", args.seed, csr, 1, **params),
                                         settings=settings)
            if with_accuracy and rates[label] is not None:
                accuracy[label] = bench.accuracy(factor_vectors(bench.last_model), holdout[ds])
        return rates, accuracy

    # Every model gets the same user x item CSR here (implicit requires one), so none pays for a
    # COO -> CSR conversion inside the timed epoch.
    rounds_two, accuracies_two = in_rounds(
        args.rounds, list(args.datasets), lambda ds, last: table_two_round(ds, csrs[ds], with_accuracy=last))
    rows = []
    for ds in args.datasets:
        per_round = rounds_two[ds]
        imp_rate = C.median_measured([r.get("implicit") for r in per_round])
        for _, label, _ in FASTRANK_BPR_VARIANTS:
            fr_rate = C.median_measured([r.get(label) for r in per_round])
            rows.append([ds, label, _cell(fr_rate, fr, args.skip_fastrank),
                         C.fmt_ratio(_ratio(fr_rate, imp_rate)),
                         " ".join(C.fmt_ratio(_ratio(r.get(label), r.get("implicit"))) for r in per_round),
                         accuracies_two[ds].get(label, "-")])
        rows.append([ds, f"implicit bpr (plain SGD), lr={LEARNING_RATE}", _cell(imp_rate, imp, args.skip_implicit),
                     "1.00x" if imp_rate else "-", "-", accuracies_two[ds].get("implicit", "-")])
    print(f"## fastrank BPR vs implicit BPR (implicit.cpu.bpr), {NO_COMPONENTS} components, 1 thread")
    print(C.format_table(["dataset", "model", "pos/s", "vs implicit", "vs implicit per round", "p@10 / AUC"],
                         rows, args.markdown))
    print()
    epochs = f"{args.warmup} warm-up + {args.epochs} timed epochs"
    print(f"Note: every row trains on the same train CSR for the same {epochs}\n"
          "(implicit: one fit(iterations=1) per epoch, continuing from its factors), in the rounds of the\n"
          "first table (pos/s the median over rounds, each round's ratio beside it; p@10 / AUC the last\n"
          "round's, scored as in the first table). implicit samples nnz (user, positive, negative)\n"
          "triples per epoch, the negative drawn from the interaction list (so in proportion to item\n"
          "popularity) and checked not to be a positive (verify_negative_samples=True); it learns\n"
          "factors+1 columns (item bias) with plain SGD, regularization=0, random_state a numpy\n"
          f"Generator seeded {args.seed} (an int would make every fit call redraw the same samples).\n"
          f"implicit's default learning_rate is {IMPLICIT_DEFAULT_LEARNING_RATE}; it is given {LEARNING_RATE} here, "
          "the rate of the\n"
          "other models. fastrank's cheapest schedule is plain SGD too (learning_schedule='sgd', no\n"
          f"optimizer state), at learning_rate={SGD_LEARNING_RATE}.")
    if "synthetic" in args.datasets:
        print("Note: the power-law set draws users and items independently, so item popularity is all\n"
              "there is to learn; implicit's popularity-proportional negatives cancel exactly that signal,\n"
              "hence its AUC near 0.5 there (a property of its sampler, not of the scoring).")
    print()

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": C.environment_summary([fr, lfm, imp_pkg]) + [nxt.summary()],
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": bench.records,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"raw timings written to {args.json}")

    print(f"# at end: {C.load_average()}")
    errors = [r for r in bench.records if "error" in r or "accuracy_error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
