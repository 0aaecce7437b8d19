#!/usr/bin/env python
"""Roofline-style floor: fastrank's epoch time vs the bare arithmetic and memory traffic it needs.

For each data set and loss this script times one fastrank epoch (``fit_partial(epochs=1)``, one
thread, 64 components, learning_rate 0.05, adagrad) and the same number of dot products and
adagrad row updates done by a tight C loop (``roofline_floor.c``, compiled here at run time with
the system C compiler and ``-O3 -shared -fPIC``, and loaded through ctypes; it includes
``fastrank/_simd.h`` and calls fastrank's own dot product and adagrad row update, with the same
run-time choice of AVX2+FMA). The C loop has
no sampling, no rejection of positives drawn as negatives, no branching on the loss and no
Python; the rows it touches come from arrays prepared in numpy:

* per positive, BPR: 2 dots (user . positive, user . negative) and 3 row updates (user,
  positive, negative: ``acc += g^2; w -= lr * g / sqrt(acc)``) plus the 2 item-bias updates;
  logistic: 1 dot and 2 row updates (user, item) plus 2 bias updates; WARP: 1 + k dots, k the
  number of negatives fastrank scores for that positive, and a BPR-like update when a violator
  is found -- k and the violator rate are measured by replaying fastrank's sampling rule in
  numpy on the model before and after every timed epoch (a sample of positives, pooled);
* **floor (random)**: users and positives from the training interactions in a random epoch
  order (as fastrank's Fisher-Yates shuffle), negatives drawn uniformly in numpy, next rows
  software-prefetched ``--prefetch`` examples ahead (fastrank prefetches too);
* **floor (no prefetch)**: the same rows without software prefetch (pure memory latency);
* **streaming floor**: the same number of dots/updates on rows visited sequentially
  (``i mod n_users`` etc.): cache-line and hardware-prefetcher friendly, so what remains is
  arithmetic plus streaming bandwidth;
* **in-cache floor**: the same on 32 user and 32 item rows (L1/L2 resident): arithmetic only.

fastrank's epoch is also split into the per-call setup (validation, CSR conversion, example
arrays: the median time of ``fit_partial(epochs=0)``) and the rest ("epoch work": shuffle,
kernel, finiteness check). Ratios: fastrank / floor (random) is the headroom left to a perfect
kernel with the same access pattern; floor / streaming is the price of random rows; streaming /
in-cache is the price of bandwidth.

**Two threads** (skipped with ``--no-two-threads``, or where fewer than two CPUs can be pinned
or fastrank lacks OpenMP): a second fastrank model trains on 2 threads epoch for epoch beside
the first, and the random floor runs on two threads pinned to two CPUs, each over one block of
users cut as ``fit`` cuts them, once sharing one set of parameters (Hogwild: the threads write
the same popular item rows) and once each on its own copy of the item side (the blocks already
keep the user rows apart, so nothing is written by both: the best speed-up this machine gives
two threads doing this arithmetic on these rows, while the copies fit in cache). fastrank's
speed-up set beside the two floors' tells the cost of shared rows, which the hardware sets,
from the kernel's own.

Usage::

    .venv/bin/python benchmarks/roofline.py                 # ~15-30 s
    .venv/bin/python benchmarks/roofline.py --datasets ml100k --losses bpr --markdown

A PNG (``benchmarks/plots/roofline.png``) is written when matplotlib can be imported.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402  (sets BLAS thread env vars before numpy)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ALL_DATASETS = ("ml100k", "synthetic")
ALL_LOSSES = ("bpr", "warp", "logistic")
LEARNING_RATE = 0.05
# fastrank's default initial adagrad accumulators (fastrank/_estimator.py)
INITIAL_ACCUMULATOR = {"warp": 1.0, "bpr": 0.1, "logistic": 0.1}
SMALL_SET = 200_000  # sets with fewer positives get 3x the timed repetitions (they are fast)
IN_CACHE_ROWS = 32


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", type=C.csv_list, default=list(ALL_DATASETS),
                   help="comma-separated subset of: " + ",".join(ALL_DATASETS))
    p.add_argument("--losses", type=C.csv_list, default=list(ALL_LOSSES),
                   help="comma-separated subset of: " + ",".join(ALL_LOSSES))
    p.add_argument("--no-components", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3,
                   help=f"timed epochs (and floor runs) after 1 warm-up; x3 for sets < {SMALL_SET:,}")
    p.add_argument("--prefetch", type=int, default=4,
                   help="software-prefetch distance (examples) of the random floor")
    p.add_argument("--warp-sample", type=int, default=20_000,
                   help="positives replayed per model state to measure WARP's draws")
    p.add_argument("--synthetic-users", type=int, default=50_000)
    p.add_argument("--synthetic-items", type=int, default=20_000)
    p.add_argument("--synthetic-nnz", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-two-threads", action="store_true",
                   help="skip the two-thread section (fastrank and the floor on 2 pinned threads)")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler")
    p.add_argument("--plot-dir", type=Path, default=HERE / "plots")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    bad = [d for d in args.datasets if d not in ALL_DATASETS] + [x for x in args.losses if x not in ALL_LOSSES]
    if bad:
        p.error(f"unknown dataset(s)/loss(es) {bad}")
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Building and loading the C floor
# ---------------------------------------------------------------------------


class Floor:
    """The compiled floor library (or the reason it is unavailable)."""

    def __init__(self, compiler: str):
        self.lib = None
        self.error = ""
        self.flags: List[str] = []
        self._dir = tempfile.TemporaryDirectory(prefix="fastrank-roofline-")
        source = HERE / "roofline_floor.c"
        cc = shutil.which(compiler)
        if cc is None:
            self.error = (f"no C compiler: '{compiler}' is not on PATH (set CC or --cc); "
                          "the floor columns are skipped")
            return
        # fastrank/_simd.h compiles its AVX2+FMA loops with target attributes and picks them at
        # run time, exactly as in fastrank itself: no -mavx2/-march flags are needed
        self.flags = ["-O3", "-fno-math-errno", "-shared", "-fPIC", "-I", str(HERE.parent / "fastrank")]
        out = Path(self._dir.name) / "roofline_floor.so"
        cmd = [cc, *self.flags, "-o", str(out), str(source), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            self.error = f"compiling the floor failed ({' '.join(cmd)}): {done.stderr.strip()[-500:]}"
            return
        shown_flags = [C.display_path(flag) if os.path.isabs(flag) else flag for flag in self.flags]
        self.command = " ".join([os.path.basename(cc), *shown_flags, "roofline_floor.c", "-lm"])
        lib = ctypes.CDLL(str(out))
        i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
        f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
        i64, cint, cfloat = ctypes.c_int64, ctypes.c_int, ctypes.c_float
        lib.floor_bpr.argtypes = [i32p, i32p, i32p, i64] + [f32p] * 6 + [cint, cfloat, cint]
        lib.floor_logistic.argtypes = [i32p, i32p, i64] + [f32p] * 8 + [cint, cfloat, cint]
        lib.floor_warp.argtypes = [i32p, i32p, i32p, i32p, i32p, f32p, i64, i64] + [f32p] * 6 + [cint, cfloat, cint]
        for fn in (lib.floor_bpr, lib.floor_logistic, lib.floor_warp):
            fn.restype = ctypes.c_double
        lib.floor_simd_level.restype = cint
        self.lib = lib
        self.simd = "avx2+fma" if lib.floor_simd_level() == 2 else "baseline (no AVX2/FMA)"

    @property
    def available(self) -> bool:
        return self.lib is not None


# ---------------------------------------------------------------------------
# Data, schedules and parameters
# ---------------------------------------------------------------------------


def load_dataset(args, name: str) -> sp.coo_matrix:
    if name == "ml100k":
        return C.load_ml100k()
    return C.make_power_law(args.synthetic_users, args.synthetic_items, args.synthetic_nnz, seed=args.seed)


def fresh_parameters(n_users: int, n_items: int, d: int, loss: str, rng) -> Dict[str, np.ndarray]:
    """Parameter and accumulator arrays initialised like fastrank's (values only matter for
    staying finite and normal; timings do not depend on them), each starting on a cache line as
    fastrank keeps its own: numpy only promises 16 bytes, and 256-byte rows that straddle five
    lines instead of four made the floor up to 30% slower, by a different amount in each process."""
    from fastrank._validation import cache_aligned

    acc = INITIAL_ACCUMULATOR[loss]

    def emb(n):
        return (rng.random((n, d), dtype=np.float32) - np.float32(0.5)) / np.float32(d)

    arrays = {"ue": emb(n_users), "ua": np.full((n_users, d), acc, np.float32),
              "ub": np.zeros(n_users, np.float32), "uba": np.full(n_users, acc, np.float32),
              "ie": emb(n_items), "ia": np.full((n_items, d), acc, np.float32),
              "ib": np.zeros(n_items, np.float32), "iba": np.full(n_items, acc, np.float32)}
    return {name: cache_aligned(array) for name, array in arrays.items()}


def access_patterns(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, n_negatives: int,
                    rng) -> Dict[str, Dict[str, np.ndarray]]:
    """Row indices for the random, streaming and in-cache floors (int32, C-contiguous)."""
    n = users.shape[0]
    order = rng.permutation(n)
    seq = np.arange(max(n, n_negatives), dtype=np.int64)
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)  # noqa: E731
    rows = IN_CACHE_ROWS
    return {
        "random": {"users": i32(users[order]), "items": i32(items[order]),
                   "negatives": i32(rng.integers(0, n_items, n_negatives))},
        "streaming": {"users": i32(seq[:n] % n_users), "items": i32(seq[:n] % n_items),
                      "negatives": i32((seq[:n_negatives] + n_items // 2) % n_items)},
        "in-cache": {"users": i32(seq[:n] % min(rows, n_users)), "items": i32(seq[:n] % min(rows, n_items)),
                     "negatives": i32((seq[:n_negatives] + rows // 2) % min(rows, n_items))},
    }


def warp_draws(model, users: np.ndarray, items: np.ndarray, keys: np.ndarray, n_items: int,
               sample: int, rng) -> Dict[str, np.ndarray]:
    """Replay fastrank's WARP sampling rule on the current model for ``sample`` random positives.

    For each positive: draw up to ``max_sampled`` uniform negatives, score each
    (``user . item + item_bias``); the first one scoring above ``positive_score - 1`` that is not
    one of the user's positives is the violator. Returns the number of negatives scored
    (``counts``) and whether a violator was found (``found``).
    """
    m = int(model.max_sampled)
    pick = rng.integers(0, users.shape[0], sample)
    u, p = users[pick], items[pick]
    ue, ie, ib = model.user_embeddings, model.item_embeddings, model.item_biases
    pos_score = np.einsum("ij,ij->i", ue[u], ie[p]) + ib[p]
    negs = rng.integers(0, n_items, (sample, m))
    neg_score = np.einsum("ij,ikj->ik", ue[u], ie[negs]) + ib[negs]
    key = u[:, None].astype(np.int64) * n_items + negs
    where = np.searchsorted(keys, key)
    is_positive = keys[np.minimum(where, keys.shape[0] - 1)] == key
    violates = (neg_score > pos_score[:, None] - 1.0) & ~is_positive
    found = violates.any(axis=1)
    counts = np.where(found, violates.argmax(axis=1) + 1, m)
    return {"counts": counts.astype(np.int32), "found": found}


def warp_schedule(draws: Dict[str, np.ndarray], n: int, n_items: int, rng) -> Dict[str, np.ndarray]:
    """Per-positive counts / violator flags for ``n`` positives, resampled from the measured draws,
    with fastrank's WARP weight log(floor((n_items - 1) / k)) clipped to [0, 10]."""
    pick = rng.integers(0, draws["counts"].shape[0], n)
    counts = np.ascontiguousarray(draws["counts"][pick], dtype=np.int32)
    found = draws["found"][pick]
    weight = np.log(np.maximum(np.floor((n_items - 1) / counts), 1.0))
    coefficient = np.ascontiguousarray(np.minimum(weight, 10.0), dtype=np.float32)
    return {"counts": counts, "found": found, "coefficient": coefficient}


def violators_for(schedule: Dict[str, np.ndarray], negatives: np.ndarray) -> np.ndarray:
    """The negative row updated by each positive (the last one it scores), or -1."""
    ends = np.cumsum(schedule["counts"], dtype=np.int64) - 1
    v = negatives[np.maximum(ends, 0)].astype(np.int32)
    v[~schedule["found"] | (schedule["counts"] == 0)] = -1
    return np.ascontiguousarray(v)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def floor_call(floor: Floor, loss: str, pattern: Dict[str, np.ndarray], params: Dict[str, np.ndarray],
               d: int, prefetch: int, schedule=None):
    """A zero-argument callable running the floor of ``loss`` once over ``pattern`` on ``params``.

    ctypes releases the GIL for the call's duration, so calls in several Python threads run at
    once (on shared or separate ``params``)."""
    P = params
    n = pattern["users"].shape[0]
    if loss == "bpr":
        return lambda: floor.lib.floor_bpr(pattern["users"], pattern["items"], pattern["negatives"], n,
                                           P["ue"], P["ua"], P["ie"], P["ia"], P["ib"], P["iba"], d,
                                           LEARNING_RATE, prefetch)
    if loss == "logistic":
        return lambda: floor.lib.floor_logistic(pattern["users"], pattern["items"], n, P["ue"], P["ua"], P["ub"],
                                                P["uba"], P["ie"], P["ia"], P["ib"], P["iba"], d, LEARNING_RATE,
                                                prefetch)
    negatives = pattern["negatives"]
    violators = violators_for(schedule, negatives)
    return lambda: floor.lib.floor_warp(pattern["users"], pattern["items"], negatives, schedule["counts"],
                                        violators, schedule["coefficient"], n, negatives.shape[0], P["ue"],
                                        P["ua"], P["ie"], P["ia"], P["ib"], P["iba"], d, LEARNING_RATE, prefetch)


def check_finite_parameters(loss: str, params: Dict[str, np.ndarray]) -> None:
    for name in ("ue", "ie"):
        if not np.all(np.isfinite(params[name])):
            raise RuntimeError(f"floor {loss}: parameters diverged ({name})")


def time_floor(floor: Floor, loss: str, pattern: Dict[str, np.ndarray], params: Dict[str, np.ndarray],
               d: int, prefetch: int, repeats: int, schedule=None) -> C.Timing:
    timing = C.time_repeated(floor_call(floor, loss, pattern, params, d, prefetch, schedule),
                             repeats=repeats, warmup=1)
    check_finite_parameters(loss, params)
    return timing


# ---------------------------------------------------------------------------
# Two threads: the floor's speed-up with shared and with private parameters
# ---------------------------------------------------------------------------


def thread_cpus(n_threads: int) -> Optional[List[int]]:
    """The first ``n_threads`` CPUs this process may run on, or None when there are fewer (or the
    platform cannot pin threads)."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:n_threads] if len(cpus) >= n_threads else None


def run_pinned(calls, cpus: List[int]) -> float:
    """Run ``calls[t]()`` in thread t pinned to ``cpus[t]``, all released at once; the seconds from
    the first start to the last finish.

    Pinned, because threads created for a few milliseconds of work are often placed on one CPU
    by the scheduler at first, which would time its placement rather than the two cores. Each
    thread reads its own clock, because the main thread (a third runnable thread on two CPUs) may
    be scheduled late."""
    spans: List[Optional[tuple]] = [None] * len(calls)
    errors: List[BaseException] = []
    start = threading.Barrier(len(calls))

    def work(index: int) -> None:
        try:
            os.sched_setaffinity(0, {cpus[index]})  # 0: the calling thread
            start.wait()
            began = time.perf_counter()
            calls[index]()
            spans[index] = (began, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 (reported in the main thread)
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a floor thread failed: {errors[0]!r}") from errors[0]
    return max(end for _, end in spans) - min(began for began, _ in spans)


def user_blocks(users: np.ndarray, n_users: int, n_blocks: int, rng) -> List[np.ndarray]:
    """Example positions cut into blocks as ``fit`` cuts them for its threads: users in fit's
    order (runs of consecutive ids in a random order, so that no line of user biases is written
    by two threads), the examples laid out user by user, cut into ``n_blocks`` blocks of equal
    size (only a user at a cut is in two), each block shuffled."""
    from fastrank._estimator import _thread_user_order

    rank = np.empty(n_users, dtype=np.int64)
    rank[_thread_user_order(n_users, rng)] = np.arange(n_users)
    order = np.argsort(rank[users], kind="stable")
    cuts = np.linspace(0, order.shape[0], n_blocks + 1).astype(np.int64)
    return [order[a:b][rng.permutation(b - a)] for a, b in zip(cuts[:-1], cuts[1:])]


def block_patterns(loss: str, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, n_blocks: int,
                   pooled_draws, rng):
    """Per block: the random floor's pattern (and WARP schedule) for that block's examples."""
    blocks = []
    for positions in user_blocks(users, n_users, n_blocks, rng):
        n = positions.shape[0]
        schedule = warp_schedule(pooled_draws, n, n_items, rng) if loss == "warp" else None
        n_negatives = int(schedule["counts"].sum()) if loss == "warp" else n
        pattern = {"users": np.ascontiguousarray(users[positions], dtype=np.int32),
                   "items": np.ascontiguousarray(items[positions], dtype=np.int32),
                   "negatives": np.ascontiguousarray(rng.integers(0, n_items, max(n_negatives, 1)), dtype=np.int32)}
        blocks.append((pattern, schedule))
    return blocks


def time_two_thread_floors(args, floor: Floor, loss: str, whole, blocks, n_users: int, n_items: int,
                           cpus: List[int], repeats: int, rng) -> Dict[str, float]:
    """Median seconds of the random floor on one thread (all examples) and on two pinned threads
    (one user block each) sharing one set of parameters (Hogwild, as fastrank) or each writing
    its own copy of the item side (the user blocks already keep the user rows apart, so then no
    row is written by both: the machine's ceiling for two threads), interleaved per repeat so a
    slow spell of a shared machine hits all three."""
    d = args.no_components
    shared = fresh_parameters(n_users, n_items, d, loss, rng)
    private = []
    for _ in blocks:
        own = fresh_parameters(n_users, n_items, d, loss, rng)
        private.append({name: shared[name] if name.startswith("u") else own[name] for name in shared})
    one = [floor_call(floor, loss, whole[0], shared, d, args.prefetch, whole[1])]
    on_shared = [floor_call(floor, loss, pattern, shared, d, args.prefetch, schedule) for pattern, schedule in blocks]
    on_private = [floor_call(floor, loss, pattern, params, d, args.prefetch, schedule)
                  for (pattern, schedule), params in zip(blocks, private)]
    seconds: Dict[str, List[float]] = {"one": [], "shared": [], "private": []}
    # After a parallel region, an OpenMP worker of fastrank's spins for a few milliseconds before
    # it sleeps; meanwhile it takes a CPU from the pinned floor threads (measured: the private
    # floor's two threads 1.4x-2.3x slower right after a fastrank epoch, not 10 ms later).
    time.sleep(0.05)
    for repeat in range(repeats + 1):  # the first round warms up
        for key, calls in (("one", one), ("shared", on_shared), ("private", on_private)):
            elapsed = run_pinned(calls, cpus[:len(calls)])
            if repeat:
                seconds[key].append(elapsed)
    for params in [shared, *private]:
        check_finite_parameters(loss, params)
    return {key: float(np.median(values)) for key, values in seconds.items()}


def run_dataset(args, name: str, mat: sp.coo_matrix, fr, floor: Floor) -> List[Dict]:
    d = args.no_components
    csr = sp.csr_matrix(mat)
    csr.sum_duplicates()
    n_users, n_items = csr.shape
    nnz = csr.nnz
    users = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(csr.indptr))
    items = csr.indices.astype(np.int32)
    keys = users.astype(np.int64) * n_items + items  # sorted (CSR order, sorted columns)
    repeats = args.epochs * (3 if nnz < SMALL_SET else 1)
    rng = np.random.default_rng(args.seed)
    cpus = None if args.no_two_threads else thread_cpus(2)
    if cpus is not None and not fr._sgd.openmp_enabled():
        cpus = None  # fastrank would train on one thread
    records = []
    for loss in args.losses:
        rec = {"dataset": name, "loss": loss, "nnz": nnz, "n_users": n_users, "n_items": n_items,
               "no_components": d, "repeats": repeats}
        # ---- fastrank -------------------------------------------------------------------
        model = fr.FastRank(no_components=d, loss=loss, learning_rate=LEARNING_RATE, random_state=args.seed)
        t0 = time.perf_counter()
        model.fit_partial(mat, epochs=1)
        warmup = time.perf_counter() - t0
        # A second model trains on two threads, epoch for epoch beside the first (same state of
        # training, same moments of a shared machine).
        model2 = None
        if cpus is not None:
            model2 = fr.FastRank(no_components=d, loss=loss, learning_rate=LEARNING_RATE, random_state=args.seed)
            model2.fit_partial(mat, epochs=1, num_threads=2)
        epoch_seconds, epoch_seconds2, draws = [], [], []
        for _ in range(repeats):
            if loss == "warp":
                draws.append(warp_draws(model, users, items, keys, n_items, args.warp_sample, rng))
            t0 = time.perf_counter()
            model.fit_partial(mat, epochs=1)
            epoch_seconds.append(time.perf_counter() - t0)
            if model2 is not None:
                t0 = time.perf_counter()
                model2.fit_partial(mat, epochs=1, num_threads=2)
                epoch_seconds2.append(time.perf_counter() - t0)
        if model2 is not None:
            rec.update(fastrank_seconds_2t=epoch_seconds2, fastrank_epoch_2t=float(np.median(epoch_seconds2)))
            del model2
        if loss == "warp":
            draws.append(warp_draws(model, users, items, keys, n_items, args.warp_sample, rng))
        setup = C.time_repeated(lambda m=model: m.fit_partial(mat, epochs=0), repeats=repeats, warmup=1)
        rec.update(fastrank_seconds=epoch_seconds, fastrank_warmup=warmup,
                   fastrank_epoch=float(np.median(epoch_seconds)), setup=setup.median)
        rec["epoch_work"] = rec["fastrank_epoch"] - rec["setup"]
        log(args, f"  {name} {loss}: fastrank warm-up {warmup:.3f}s | timed "
            + " ".join(f"{s:.3f}s" for s in epoch_seconds) + f" | setup (epochs=0) {setup.median:.4f}s")
        # ---- work per positive --------------------------------------------------------------
        schedule = pooled = None
        if loss == "bpr":
            dots, updates, n_negatives = 2.0, 3.0, nnz
        elif loss == "logistic":
            dots, updates, n_negatives = 1.0, 2.0, 0
        else:
            pooled = {k: np.concatenate([dr[k] for dr in draws]) for k in ("counts", "found")}
            schedule = warp_schedule(pooled, nnz, n_items, rng)
            n_negatives = int(schedule["counts"].sum())
            dots = 1.0 + n_negatives / nnz
            updates = 3.0 * float(schedule["found"].mean())
            rec["warp_negatives_per_positive"] = n_negatives / nnz
            rec["warp_violator_rate"] = float(schedule["found"].mean())
            rec["warp_negatives_by_state"] = [float(dr["counts"].mean()) for dr in draws]
        rec.update(dots_per_positive=dots, row_updates_per_positive=updates)
        # ---- floors -------------------------------------------------------------------------
        if floor.available:
            patterns = access_patterns(users, items, n_users, n_items, max(n_negatives, 1), rng)
            variants = [("floor", "random", args.prefetch), ("floor_no_prefetch", "random", 0),
                        ("streaming", "streaming", args.prefetch), ("in_cache", "in-cache", args.prefetch)]
            for key, pattern_name, prefetch in variants:
                params = fresh_parameters(n_users, n_items, d, loss, rng)
                timing = time_floor(floor, loss, patterns[pattern_name], params, d, prefetch, repeats, schedule)
                rec[key] = timing.median
                rec[key + "_seconds"] = timing.seconds
                del params
            log(args, f"  {name} {loss}: floor {rec['floor']:.4f}s, no prefetch {rec['floor_no_prefetch']:.4f}s, "
                f"streaming {rec['streaming']:.4f}s, in-cache {rec['in_cache']:.4f}s")
            if cpus is not None:
                blocks = block_patterns(loss, users, items, n_users, n_items, 2, pooled, rng)
                rec["round_trip_ns"] = C.core_round_trip_ns()
                two = time_two_thread_floors(args, floor, loss, (patterns["random"], schedule), blocks, n_users,
                                             n_items, cpus, max(repeats, 5), rng)
                rec.update(floor_1t=two["one"], floor_2t_shared=two["shared"], floor_2t_private=two["private"])
                log(args, f"  {name} {loss}: floor 1 thread {two['one']:.4f}s, 2 threads shared "
                    f"{two['shared']:.4f}s, private {two['private']:.4f}s")
        records.append(rec)
        del model
    return records


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def _x(a: Optional[float], b: Optional[float]) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def _ns(value: Optional[float], nnz: int) -> str:
    return "-" if value is None else f"{value / nnz * 1e9:.0f}"


def print_two_threads(records: List[Dict], md: bool) -> None:
    print("## Two threads: fastrank's speed-up and the floor's")
    rows = []
    for r in records:
        setup = r["setup"]
        one, two = r["fastrank_epoch"], r["fastrank_epoch_2t"]
        floor_one, shared, private = r.get("floor_1t"), r.get("floor_2t_shared"), r.get("floor_2t_private")
        rows.append([r["dataset"], r["loss"], C.format_round_trip(r.get("round_trip_ns")), _s(one), _s(two),
                     _x(one, two), _x(one - setup, two - setup), _s(floor_one), _s(shared), _x(floor_one, shared),
                     _s(private), _x(floor_one, private)])
    print(C.format_table(["dataset", "loss", "core round trip", "fastrank 1 thr", "fastrank 2 thr",
                          "speed-up per call", "speed-up of epoch work", "floor 1 thr", "floor 2 thr shared",
                          "speed-up shared", "floor 2 thr private", "speed-up private"], rows, md))
    print()
    notes = [
        "fastrank: fit_partial(epochs=1) on 1 and on 2 threads (two models trained epoch for epoch side by",
        "side; median seconds); epoch work = epoch - setup (the 1-thread fit_partial(epochs=0)). Floor: the",
        "random floor, on 1 thread over all examples, and on 2 threads pinned to 2 CPUs, each over one block",
        "of users cut as fit cuts them (fit's user order, equal halves of the examples), either sharing one",
        "set of parameters (Hogwild: both threads write the popular item rows, as in fastrank) or each",
        "writing its own copy of the item side (no row written by both: what this machine allows two",
        "threads at best, while the copies fit in cache).",
        "The floor packs 16 item biases per cache line; fastrank gives each item bias its own line when",
        "several threads train a model of under 2 MiB, so it can beat the shared floor. The core round trip",
        "(benchmarks/core_latency.c) is measured just before each row's two-thread floors.",
    ]
    print("\n".join(notes))
    print()


def plot(args, records: List[Dict]) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        print("matplotlib is not importable: no PNG written")
        return None
    if not records:
        return None
    series = [("fastrank_epoch", "fastrank epoch"), ("epoch_work", "fastrank epoch work"),
              ("floor", "floor (random, prefetch)"), ("floor_no_prefetch", "floor (random, no prefetch)"),
              ("streaming", "streaming floor"), ("in_cache", "in-cache floor")]
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(records)), 4.5))
    width = 0.8 / len(series)
    xs = np.arange(len(records))
    for j, (key, label) in enumerate(series):
        vals = [r.get(key, np.nan) / r["nnz"] * 1e9 if r.get(key) is not None else np.nan for r in records]
        ax.bar(xs - 0.4 + (j + 0.5) * width, vals, width, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{r['dataset']}\n{r['loss']}" for r in records], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ns per positive (log)")
    ax.set_title(f"fastrank epoch vs roofline floors ({args.no_components} components, 1 thread)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return C.save_figure(fig, args.plot_dir, "roofline.png")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    fr = C.try_import("fastrank")
    if not fr.available:
        print(f"fastrank cannot be imported: {fr.error}")
        return 1
    floor = Floor(args.cc)
    print("# fastrank roofline floor")
    for line in C.environment_summary([fr]):
        print("# " + line)
    print(f"# fastrank inner loops: {getattr(fr.module, 'instruction_set', '?')}; "
          f"no_components={args.no_components}, learning_rate={LEARNING_RATE}, adagrad, 1 thread, "
          f"1 warm-up + median of {args.epochs} timed epochs (x3 for sets < {SMALL_SET:,} positives)")
    if floor.available:
        print(f"# floor: {floor.command} -> inner loops {floor.simd}; prefetch distance {args.prefetch}")
    else:
        print(f"# floor: SKIPPED -- {floor.error}")
    records: List[Dict] = []
    for name in args.datasets:
        try:
            mat = load_dataset(args, name)
        except FileNotFoundError as exc:
            print(f"# {name}: skipped ({exc})")
            continue
        print(f"# {name}: {C.describe_matrix(mat)}")
        records += run_dataset(args, name, mat, fr.module, floor)
    print()
    md = args.markdown

    print("## Work per positive and times per epoch (seconds, median)")
    rows = []
    for r in records:
        rows.append([r["dataset"], r["loss"], f"{r['dots_per_positive']:.2f}", f"{r['row_updates_per_positive']:.2f}",
                     _s(r["fastrank_epoch"]), _s(r["setup"]), _s(r["epoch_work"]), _s(r.get("floor")),
                     _s(r.get("floor_no_prefetch")), _s(r.get("streaming")), _s(r.get("in_cache"))])
    print(C.format_table(["dataset", "loss", "dots/pos", "row updates/pos", "fastrank epoch", "setup",
                          "epoch work", "floor (random)", "floor (no prefetch)", "streaming floor",
                          "in-cache floor"], rows, md))
    print()
    print("## ns per positive and ratios")
    rows = []
    for r in records:
        n = r["nnz"]
        rows.append([r["dataset"], r["loss"], _ns(r["fastrank_epoch"], n), _ns(r["epoch_work"], n),
                     _ns(r.get("floor"), n), _ns(r.get("streaming"), n), _ns(r.get("in_cache"), n),
                     _x(r["fastrank_epoch"], r.get("floor")), _x(r["epoch_work"], r.get("floor")),
                     _x(r.get("floor"), r.get("streaming")), _x(r.get("streaming"), r.get("in_cache"))])
    print(C.format_table(["dataset", "loss", "fastrank ns", "epoch work ns", "floor ns", "streaming ns",
                          "in-cache ns", "fastrank/floor", "work/floor", "floor/streaming",
                          "streaming/in-cache"], rows, md))
    print()
    two = [r for r in records if "fastrank_epoch_2t" in r]
    if two:
        print_two_threads(two, md)
    elif not args.no_two_threads:
        print("Two threads: skipped (fewer than two CPUs to pin to, no sched_setaffinity, fastrank built "
              "without OpenMP, or no floor).")
        print()
    warp = [r for r in records if r["loss"] == "warp"]
    for r in warp:
        states = ", ".join(f"{v:.2f}" for v in r["warp_negatives_by_state"])
        print(f"WARP on {r['dataset']}: {r['warp_negatives_per_positive']:.2f} negatives scored per positive "
              f"and a violator for {100 * r['warp_violator_rate']:.1f}% of positives (pooled over the model "
              f"states before/after each timed epoch: {states} negatives).")
    notes = [
        "setup = fit_partial(epochs=0) (validation, CSR copy, example arrays); epoch work = fastrank",
        "epoch - setup (shuffle + kernel + finiteness check). Floors: same dots/updates as the loss,",
        "no sampling or loss branches; random = training rows in shuffled order, uniform negatives,",
        f"software prefetch {args.prefetch} ahead; streaming = rows visited sequentially; in-cache =",
        f"{IN_CACHE_ROWS} user and {IN_CACHE_ROWS} item rows. fastrank/floor = headroom left to a perfect kernel;",
        "floor/streaming = price of random rows; streaming/in-cache = price of memory bandwidth.",
    ]
    print("\n".join(notes))
    print()
    png = None if args.no_plot else plot(args, records)
    if png:
        print(f"Plot: {C.display_path(png)}")
    print(f"# {C.load_average()}; total wall time {time.perf_counter() - start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
