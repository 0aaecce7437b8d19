#!/usr/bin/env python
"""Cost-growth benchmark: how fastrank's epoch time and memory grow with the problem.

Three measurements, all with fastrank alone (no peers), ``learning_rate=0.05``, adagrad:

a. **Epoch time vs number of interactions.** Power-law sets of 1,000,000 users x 200,000
   items with 1M, 5M and 20M unique positives (``_common.make_power_law_fast``), BPR and WARP
   at 64 components, one thread by default. One untimed warm-up epoch, then the median of
   ``--epochs`` timed ``fit_partial(epochs=1)`` calls (``--large-epochs`` for sets of at least
   ``--large-threshold`` positives, to keep the run short). A least-squares line
   ``time = a + b * nnz`` is fitted per loss and its R^2 printed (goal: linear, R^2 >= 0.98).
b. **Epoch time vs no_components** 16, 32, 64, 128, 256 on the 50,000 x 20,000 x 1,000,000
   power-law set of the other benchmarks (``_common.make_power_law``), with a line
   ``time = a + b * no_components`` and its R^2.
c. **Peak memory.** For each case a fresh Python process imports numpy/scipy/fastrank, records
   its resident set size (baseline), loads the interactions from a temporary ``.npz`` written by
   this process (so generating the data does not count), fits ``--memory-epochs`` epochs and
   reads its peak RSS (``VmHWM``, reset to the baseline through ``/proc/self/clear_refs``:
   ``getrusage(RUSAGE_SELF).ru_maxrss`` survives fork + exec on Linux, so in a child it
   starts at the parent's RSS and overstates small cases). ``peak - baseline`` is compared
   with the theoretical size: parameters (user and item embeddings and biases, float32) +
   adagrad accumulators (the same size) + the interactions once as COO (int32 row, int32 col,
   float32 value: 12 bytes per positive). Goal: ratio <= 1.5. A second column predicts the peak
   from what ``fit`` allocates (see ``predicted_fit_bytes``); a dense users x items array would
   show up as a ratio in the hundreds or an out-of-memory error.

Usage::

    .venv/bin/python benchmarks/cost_growth.py                     # ~4-6 minutes on 2 cores
    .venv/bin/python benchmarks/cost_growth.py --sizes 200000,500000,1000000 --skip-components
    .venv/bin/python benchmarks/cost_growth.py --markdown --threads 1,2

A PNG (``benchmarks/plots/cost_growth.png``) is written when matplotlib can be imported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402  (sets BLAS thread env vars before numpy)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

LEARNING_RATE = 0.05
MIB = 1024.0 * 1024.0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=C.csv_ints, default=[1_000_000, 5_000_000, 20_000_000],
                   help="numbers of positives for part a (comma-separated)")
    p.add_argument("--users", type=int, default=1_000_000, help="users of the part-a sets")
    p.add_argument("--items", type=int, default=200_000, help="items of the part-a sets")
    p.add_argument("--losses", type=C.csv_list, default=["bpr", "warp"], help="losses of part a")
    p.add_argument("--threads", type=C.csv_ints, default=[1],
                   help="thread counts of part a, e.g. 1,2 (part b and c use the first)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per model (after 1 warm-up)")
    p.add_argument("--large-epochs", type=int, default=2,
                   help="timed epochs for sets with at least --large-threshold positives")
    p.add_argument("--large-threshold", type=int, default=10_000_000)
    p.add_argument("--components", type=C.csv_ints, default=[16, 32, 64, 128, 256],
                   help="no_components values of part b")
    p.add_argument("--components-losses", type=C.csv_list, default=["bpr", "warp"], help="losses of part b")
    p.add_argument("--components-set", type=C.csv_ints, default=[50_000, 20_000, 1_000_000],
                   help="users,items,positives of the part-b set (make_power_law, seed 42)")
    p.add_argument("--memory-epochs", type=int, default=2,
                   help="epochs fitted in each memory case (>= 2 shows the epoch-boundary peak)")
    p.add_argument("--no-components", type=int, default=64, help="no_components of parts a and c")
    p.add_argument("--seed", type=int, default=42, help="random_state of every model and data seed")
    p.add_argument("--skip-scaling", action="store_true", help="skip part a")
    p.add_argument("--skip-components", action="store_true", help="skip part b")
    p.add_argument("--skip-memory", action="store_true", help="skip part c")
    p.add_argument("--plot-dir", type=Path, default=HERE / "plots", help="where the PNG goes")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    # internal: one memory case, run in a fresh process
    p.add_argument("--memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-loss", default="bpr", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.large_epochs < 1 or args.memory_epochs < 1:
        p.error("--epochs, --large-epochs and --memory-epochs must be >= 1")
    if len(args.components_set) != 3:
        p.error("--components-set needs users,items,positives")
    return args


def log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Line fits
# ---------------------------------------------------------------------------


def line_fit(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float, float]:
    """Least-squares ``y = a + b x``; returns (a, b, R^2) (R^2 is nan for fewer than 3 points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] < 2:
        return float("nan"), float("nan"), float("nan")
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / total if total > 0 and x.shape[0] > 2 else float("nan")
    return float(a), float(b), float(r2)


def _r2_cell(r2: float, goal: float = 0.98) -> str:
    if np.isnan(r2):
        return "n/a (<3 points)"
    return f"{r2:.4f}" + ("" if r2 >= goal else f" (< {goal})")


# ---------------------------------------------------------------------------
# Part a / b: timing
# ---------------------------------------------------------------------------


def time_epochs(fr, mat, loss: str, no_components: int, threads: int, seed: int,
                repeats: int) -> C.Timing:
    model = fr.FastRank(no_components=no_components, loss=loss, learning_rate=LEARNING_RATE,
                        random_state=seed)

    def step() -> None:
        model.fit_partial(mat, epochs=1, num_threads=threads)

    return C.time_repeated(step, repeats=repeats, warmup=1)


def _timing_log(args, label: str, timing: C.Timing) -> None:
    log(args, f"  {label}: warm-up " + " ".join(f"{s:.2f}s" for s in timing.warmup_seconds)
        + " | timed " + " ".join(f"{s:.2f}s" for s in timing.seconds))


# ---------------------------------------------------------------------------
# Part c: memory
# ---------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    """A KiB field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``; -1 when unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _rss_kib() -> int:
    """Current resident set size in KiB (VmRSS)."""
    return _status_kib("VmRSS")


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_child(args: argparse.Namespace) -> int:
    """Body of one memory case, in its own process; prints one JSON line."""
    import resource

    import fastrank

    # ru_maxrss survives fork + exec on Linux: a fresh child starts with the parent's RSS at
    # spawn time as its "peak". VmHWM belongs to the new address space and can be reset, so the
    # peak is read from there (ru_maxrss is kept for reference).
    reset = _reset_peak_rss()
    baseline = _rss_kib()
    hwm_at_baseline = _status_kib("VmHWM")
    with np.load(args.memory_child) as archive:
        shape = tuple(int(v) for v in archive["shape"])
        mat = sp.coo_matrix((archive["data"], (archive["row"], archive["col"])), shape=shape)
    after_load = _rss_kib()
    model = fastrank.FastRank(no_components=args.no_components, loss=args.child_loss,
                              learning_rate=LEARNING_RATE, random_state=args.seed)
    t0 = time.perf_counter()
    model.fit(mat, epochs=0, num_threads=args.threads[0])  # allocates parameters only
    after_init = _rss_kib()
    model.fit_partial(mat, epochs=args.memory_epochs, num_threads=args.threads[0])
    seconds = time.perf_counter() - t0
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    hwm = _status_kib("VmHWM")
    peak = hwm if hwm > 0 else ru_maxrss
    print(json.dumps({"baseline_kib": baseline, "after_load_kib": after_load,
                      "after_init_kib": after_init, "end_kib": _rss_kib(), "peak_kib": peak,
                      "peak_source": "VmHWM" if hwm > 0 else "ru_maxrss", "hwm_reset": reset,
                      "hwm_at_baseline_kib": hwm_at_baseline, "ru_maxrss_kib": ru_maxrss,
                      "fit_seconds": seconds}))
    return 0


def theoretical_bytes(n_users: int, n_items: int, nnz: int, d: int) -> Dict[str, int]:
    """Parameters, adagrad state and COO interactions, in bytes."""
    params = (n_users + n_items) * (d + 1) * 4
    return {"params": params, "optimizer": params, "interactions": nnz * 12,
            "total": 2 * params + nnz * 12}


def predicted_fit_bytes(n_users: int, n_items: int, nnz: int, d: int, epochs: int) -> Dict[str, int]:
    """Peak of ``fit`` above the baseline, predicted from reading ``fastrank/_estimator.py``.

    What is alive at the peak (identity features, all values > 0, no sample_weight, a ranking
    loss):

    * the caller's COO (12 B/positive) -- counted by the theory;
    * ``check_interactions`` -> ``to_csr``: a canonical CSR copy (int32 indices, float32 data:
      8 B/positive, plus 4 B/user of indptr), kept for the whole call;
    * ``_training_examples``: nothing per positive (items and the positive CSR alias the CSR,
      the examples' users are its row pointer; no weights array without sample_weight, no
      labels array for the ranking losses);
    * every epoch ``_sgd.shuffled_examples`` writes the examples' users and a copy of their
      items, shuffled in place (8 B/positive); the previous epoch's are dropped before the next
      are made;
    * ``_check_finite`` checks the parameters in place, in chunks of 65,536 floats (no mask);
    * parameters and adagrad accumulators (float32, embeddings and biases).
    """
    theory = theoretical_bytes(n_users, n_items, nnz, d)
    extra = 8 + 8
    # row pointers: the CSR's (int32) and the examples' user_starts (int64)
    return {"total": theory["total"] + nnz * extra + 12 * (n_users + 1), "extra_per_positive": extra}


def run_memory_case(args, npz: Path, loss: str) -> Dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(npz),
           "--child-loss", loss, "--no-components", str(args.no_components),
           "--memory-epochs", str(args.memory_epochs), "--threads", str(args.threads[0]),
           "--seed", str(args.seed)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def save_npz(mat: sp.coo_matrix, directory: str, name: str) -> Path:
    path = Path(directory) / f"{name}.npz"
    coo = mat.tocoo()
    np.savez(path, row=coo.row.astype(np.int32, copy=False), col=coo.col.astype(np.int32, copy=False),
             data=coo.data.astype(np.float32, copy=False), shape=np.array(coo.shape, dtype=np.int64))
    return path


def memory_record(args, name: str, loss: str, mat: sp.spmatrix, npz: Path) -> Dict:
    n_users, n_items = mat.shape
    log(args, f"  memory: {name} {loss} (fresh process, {args.memory_epochs} epochs) ...")
    res = run_memory_case(args, npz, loss)
    theory = theoretical_bytes(n_users, n_items, mat.nnz, args.no_components)
    predicted = predicted_fit_bytes(n_users, n_items, mat.nnz, args.no_components, args.memory_epochs)
    rec = {"case": name, "loss": loss, "n_users": n_users, "n_items": n_items, "nnz": mat.nnz,
           "no_components": args.no_components, "theory": theory, "predicted": predicted, **res}
    if "error" not in res:
        rec["measured_bytes"] = (res["peak_kib"] - res["baseline_kib"]) * 1024
        rec["ratio"] = rec["measured_bytes"] / theory["total"]
        rec["predicted_ratio"] = predicted["total"] / theory["total"]
        log(args, f"    peak-baseline {rec['measured_bytes'] / MIB:,.0f} MiB, theory "
            f"{theory['total'] / MIB:,.0f} MiB, ratio {rec['ratio']:.2f} ({res['fit_seconds']:.1f}s)")
    else:
        log(args, f"    ERROR {res['error']}")
    return rec


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------


def plot(args, scaling: List[Dict], components: List[Dict], memory: List[Dict]) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        print("matplotlib is not importable: no PNG written")
        return None
    panels = [p for p, rows in (("a", scaling), ("b", components), ("c", memory)) if rows]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2))
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels):
        if panel == "a":
            for key in sorted({(r["loss"], r["threads"]) for r in scaling}):
                rows = sorted((r for r in scaling if (r["loss"], r["threads"]) == key), key=lambda r: r["nnz"])
                x = np.array([r["nnz"] for r in rows], float)
                y = np.array([r["epoch_seconds"] for r in rows])
                a, b, r2 = line_fit(x, y)
                line = ax.plot(x / 1e6, y, "o", label=f"{key[0]} {key[1]} thr (R²={r2:.3f})")[0]
                xs = np.linspace(0, x.max(), 50)
                ax.plot(xs / 1e6, a + b * xs, "-", color=line.get_color(), alpha=0.6)
            ax.set_xlabel("positives (millions)")
            ax.set_ylabel("epoch seconds")
            ax.set_title(f"a. epoch time vs nnz ({args.users:,} x {args.items:,})", fontsize=9)
        elif panel == "b":
            for loss in sorted({r["loss"] for r in components}):
                rows = sorted((r for r in components if r["loss"] == loss), key=lambda r: r["no_components"])
                x = np.array([r["no_components"] for r in rows], float)
                y = np.array([r["epoch_seconds"] for r in rows])
                a, b, r2 = line_fit(x, y)
                line = ax.plot(x, y, "o", label=f"{loss} (R²={r2:.3f})")[0]
                xs = np.linspace(0, x.max(), 50)
                ax.plot(xs, a + b * xs, "-", color=line.get_color(), alpha=0.6)
            ax.set_xlabel("no_components")
            ax.set_ylabel("epoch seconds")
            ax.set_title("b. epoch time vs no_components", fontsize=9)
        else:
            ok = [r for r in memory if "ratio" in r]
            labels = [f"{r['case']}\n{r['loss']}" for r in ok]
            xs = np.arange(len(ok))
            ax.bar(xs - 0.2, [r["theory"]["total"] / MIB for r in ok], 0.4, label="theory")
            ax.bar(xs + 0.2, [r["measured_bytes"] / MIB for r in ok], 0.4, label="peak - baseline")
            for x, r in zip(xs, ok):
                ax.text(x + 0.2, r["measured_bytes"] / MIB, f"{r['ratio']:.2f}x", ha="center",
                        va="bottom", fontsize=7)
            ax.set_xticks(xs)
            ax.set_xticklabels(labels, fontsize=6)
            ax.set_ylabel("MiB")
            ax.set_title("c. peak memory vs theoretical size", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return C.save_figure(fig, args.plot_dir, "cost_growth.png")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args)
    start = time.perf_counter()
    fr = C.try_import("fastrank")
    if not fr.available:
        print(f"fastrank cannot be imported: {fr.error}")
        return 1
    fr = fr.module
    md = args.markdown
    d = args.no_components

    print("# fastrank cost growth")
    for line in C.environment_summary([C.OptionalModule("fastrank", fr)]):
        print("# " + line)
    print(f"# fastrank inner loops: {getattr(fr, 'instruction_set', '?')}; settings: learning_rate="
          f"{LEARNING_RATE}, adagrad, random_state={args.seed}; 1 warm-up epoch, then the median of "
          f"{args.epochs} timed fit_partial(epochs=1) calls ({args.large_epochs} for sets with >= "
          f"{args.large_threshold:,} positives)")
    print()

    scaling: List[Dict] = []
    components: List[Dict] = []
    memory: List[Dict] = []
    tmpdir = tempfile.TemporaryDirectory(prefix="fastrank-cost-growth-")
    try:
        # ---- a. epoch time vs nnz (and memory cases on the same sets) ------------------
        if not args.skip_scaling or not args.skip_memory:
            for nnz in args.sizes:
                t0 = time.perf_counter()
                mat = C.make_power_law_fast(args.users, args.items, nnz, seed=args.seed)
                log(args, f"set {args.users:,} x {args.items:,} x {nnz:,}: generated in "
                    f"{time.perf_counter() - t0:.1f}s")
                print(f"# part a set: {C.describe_matrix(mat)}")
                if not args.skip_scaling:
                    repeats = args.large_epochs if nnz >= args.large_threshold else args.epochs
                    for loss in args.losses:
                        for threads in args.threads:
                            timing = time_epochs(fr, mat, loss, d, threads, args.seed, repeats)
                            _timing_log(args, f"{nnz:,} {loss} t={threads}", timing)
                            scaling.append({"nnz": nnz, "loss": loss, "threads": threads,
                                            "seconds": timing.seconds,
                                            "warmup_seconds": timing.warmup_seconds,
                                            "epoch_seconds": timing.median})
                if not args.skip_memory:
                    npz = save_npz(mat, tmpdir.name, f"set_{nnz}")
                    memory.append(memory_record(args, f"{args.users // 1000}k x {args.items // 1000}k x "
                                                f"{nnz / 1e6:g}M", "bpr", mat, npz))
                    npz.unlink()
                del mat

        # ---- b. epoch time vs no_components (and memory cases on that set) -------------
        cu, ci, cn = args.components_set
        cname = f"{cu // 1000}k x {ci // 1000}k x {cn / 1e6:g}M"
        if not args.skip_components or not args.skip_memory:
            mat = C.make_power_law(cu, ci, cn, seed=args.seed)
            print(f"# part b set: {C.describe_matrix(mat)}")
            if not args.skip_components:
                for loss in args.components_losses:
                    for comp in args.components:
                        timing = time_epochs(fr, mat, loss, comp, args.threads[0], args.seed,
                                             args.epochs)
                        _timing_log(args, f"d={comp} {loss}", timing)
                        components.append({"no_components": comp, "loss": loss, "nnz": mat.nnz,
                                           "seconds": timing.seconds,
                                           "warmup_seconds": timing.warmup_seconds,
                                           "epoch_seconds": timing.median})
            if not args.skip_memory:
                npz = save_npz(mat, tmpdir.name, "components_set")
                for loss in ("bpr", "warp"):
                    memory.append(memory_record(args, cname, loss, mat, npz))
            del mat
    finally:
        tmpdir.cleanup()
    print()

    # ---- tables ------------------------------------------------------------------------
    if scaling:
        thr = ",".join(str(t) for t in args.threads)
        print(f"## a. Epoch time vs interactions ({args.users:,} users x {args.items:,} items, "
              f"no_components={d}, threads {thr})")
        rows = [[f"{r['nnz']:,}", r["loss"], r["threads"], len(r["seconds"]),
                 f"{r['epoch_seconds']:.3f}", f"{r['epoch_seconds'] / r['nnz'] * 1e9:.0f}",
                 C.fmt_rate(r["nnz"] / r["epoch_seconds"])] for r in scaling]
        print(C.format_table(["positives", "loss", "threads", "timed epochs", "epoch s (median)",
                              "ns/positive", "positives/s"], rows, md))
        print()
        rows = []
        for loss in args.losses:
            for threads in args.threads:
                sel = [r for r in scaling if r["loss"] == loss and r["threads"] == threads]
                a, b, r2 = line_fit([r["nnz"] for r in sel], [r["epoch_seconds"] for r in sel])
                rows.append([loss, threads, f"{a:.3f}", f"{b * 1e9:.1f}", _r2_cell(r2)])
        print("Least-squares fit epoch_seconds = a + b * nnz (goal: linear, R^2 >= 0.98):")
        print(C.format_table(["loss", "threads", "a (s)", "b (ns/positive)", "R^2"], rows, md))
        print()
        print("Note: with sizes spread 1:5:20 the largest set dominates the fit, so R^2 stays high even\n"
              "when the cost per positive drifts: compare the ns/positive column across sizes too.\n"
              "BPR's negative check is a binary search over the user's positives, whose (example-\n"
              "weighted) length grows with positives per user.")
        if "warp" in args.losses:
            print("Note: WARP's cost per positive depends on how well the model is trained (more\n"
                  "negatives are scored before a violator is found), and one warm-up epoch trains a\n"
                  "larger set further, so WARP's per-positive time can rise with nnz for that reason.")
            print()

    if components:
        print(f"## b. Epoch time vs no_components ({cname} power-law set, "
              f"{args.threads[0]} thread)")
        rows = [[r["no_components"], r["loss"], f"{r['epoch_seconds']:.3f}",
                 f"{r['epoch_seconds'] / r['nnz'] * 1e9:.0f}",
                 f"{r['epoch_seconds'] / r['nnz'] / r['no_components'] * 1e9:.2f}"] for r in components]
        print(C.format_table(["no_components", "loss", "epoch s (median)", "ns/positive",
                              "ns/positive/component"], rows, md))
        print()
        rows = []
        for loss in args.components_losses:
            sel = [r for r in components if r["loss"] == loss]
            a, b, r2 = line_fit([r["no_components"] for r in sel], [r["epoch_seconds"] for r in sel])
            rows.append([loss, "", f"{a:.3f}", f"{b * 1e3:.2f}", _r2_cell(r2)])
        print("Least-squares fit epoch_seconds = a + b * no_components:")
        print(C.format_table(["loss", "", "a (s)", "b (ms/component)", "R^2"], rows, md))
        print()

    if memory:
        print(f"## c. Peak memory of fit (fresh process per case, no_components={d}, "
              f"{args.memory_epochs} epochs, adagrad)")
        rows = []
        for r in memory:
            th = r["theory"]
            dense = r["n_users"] * r["n_items"] * 4 / MIB
            if "error" in r:
                rows.append([r["case"], r["loss"], f"{r['nnz']:,}", "-", "-",
                             f"{th['total'] / MIB:,.0f}", "-", "-", "-", f"{dense:,.0f}",
                             "ERROR: " + r["error"]])
                continue
            rows.append([
                r["case"], r["loss"], f"{r['nnz']:,}",
                f"{(r['after_load_kib'] - r['baseline_kib']) / 1024:,.0f}",
                f"{(r['after_init_kib'] - r['after_load_kib']) / 1024:,.0f}",
                f"{th['params'] / MIB:,.0f} + {th['optimizer'] / MIB:,.0f} + {th['interactions'] / MIB:,.0f}"
                f" = {th['total'] / MIB:,.0f}",
                f"{r['measured_bytes'] / MIB:,.0f}",
                f"{r['ratio']:.2f}x" + ("" if r["ratio"] <= 1.5 else " (> 1.5)"),
                f"{r['predicted']['total'] / MIB:,.0f} ({r['predicted_ratio']:.2f}x)",
                f"{dense:,.0f}", f"{r['fit_seconds']:.1f}",
            ])
        print(C.format_table(["case", "loss", "positives", "load MiB", "init MiB",
                              "theory MiB (params + adagrad + COO)", "peak - baseline MiB", "ratio",
                              "predicted MiB", "dense float32 MiB", "fit s"], rows, md))
        print()
        notes = [
            "Columns: load = RSS growth from loading the COO (the 12 B/positive the theory counts);",
            "init = RSS growth from fit(epochs=0) (parameters + adagrad accumulators, float32);",
            "theory = (users + items) x (no_components + 1) x 4 B of parameters, the same again for",
            "adagrad, and nnz x 12 B for the COO (int32 row, int32 col, float32 value);",
            "peak - baseline = peak RSS (VmHWM, reset after the imports) minus the RSS after imports;",
            "predicted = the peak expected from what fit allocates (below); dense = the size of one",
            "users x items float32 array, for scale.",
            "What fit allocates beyond the theory (read from fastrank/_estimator.py): a canonical CSR",
            "copy of the input (8 B/positive) and every epoch the shuffled example users and items",
            "(8 B/positive; the previous epoch's are dropped first): "
            f"{predicted_fit_bytes(1, 1, 1, 1, args.memory_epochs)['extra_per_positive']} B/positive on top of "
            "the caller's 12. Nothing of users x items size is allocated (the ratio would be in the",
            "hundreds).",
            "The peak is VmHWM from /proc/self/status, reset after the imports (clear_refs 5):",
            "getrusage's ru_maxrss survives fork + exec on Linux, so in a child process it starts at",
            "the parent's RSS at spawn time and would overstate the small cases.",
        ]
        print("\n".join(notes))
        print()

    png = None if args.no_plot else plot(args, scaling, components, memory)
    if png:
        print(f"Plot: {C.display_path(png)}")
    print(f"# {C.load_average()}; total wall time {time.perf_counter() - start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"scaling": scaling, "components": components,
                                         "memory": memory}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
