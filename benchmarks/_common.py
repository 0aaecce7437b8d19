"""Shared helpers for the fastrank benchmarks.

This module is imported by the individual benchmark scripts in this folder
(``train_throughput.py`` and later ones). It provides

* thread/BLAS environment defaults (applied on import, *before* numpy is
  imported, so that BLAS libraries pick them up),
* dataset loaders (MovieLens 100k) and seeded synthetic power-law
  generators (``make_power_law``; ``make_power_law_fast`` for tens of
  millions of pairs),
* optional imports of fastrank and of the peer libraries (LightFM from
  ``rectools-lightfm`` and ``implicit``) that degrade to ``None`` when a
  library is missing,
* timing helpers based on :func:`time.perf_counter`,
* plain-text / markdown table formatting.

It deliberately depends only on numpy and scipy, so the benchmarks can run
in fastrank's own virtual environment as well as in ``.bench-venv``.
"""

from __future__ import annotations

import os

# BLAS thread pools must be limited before numpy/scipy are imported. Training
# kernels of fastrank/LightFM/implicit do not use BLAS, but implicit warns
# (and wastes time) when OpenBLAS runs multi-threaded, and a busy BLAS pool
# would compete with the kernels on a small machine. OMP_NUM_THREADS is left
# alone on purpose: the kernels' ``num_threads`` argument controls them.
for _var in (
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")

import importlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

#: Repository root (the parent of this ``benchmarks`` folder).
REPO_ROOT = Path(__file__).resolve().parent.parent


def display_path(path) -> str:
    """``path`` relative to the repository root when it lies inside it (as printed in
    RESULTS.md, which should not name the clone it was made in), else as given."""
    absolute = Path(os.path.abspath(path))  # not resolve(): a venv's python is a link out of the tree
    try:
        return str(absolute.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


#: Shape of the MovieLens 100k rating matrix.
ML100K_SHAPE = (943, 1682)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def data_dir() -> Path:
    """Return the folder that holds the benchmark data sets.

    Returns
    -------
    pathlib.Path
        ``$FASTRANK_DATA`` if that variable is set and non-empty, otherwise
        ``../shared/data`` relative to the repository root.
    """
    env = os.environ.get("FASTRANK_DATA")
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def load_ml100k(
    min_rating: float = 4.0,
    path: Optional[os.PathLike] = None,
    dtype=np.float32,
) -> sp.coo_matrix:
    """Load MovieLens 100k as a binary user x item positives matrix.

    Parameters
    ----------
    min_rating : float, default 4.0
        Ratings greater than or equal to this value are kept as positives;
        all other ratings are dropped.
    path : path-like, optional
        Path of ``u.data``. Defaults to ``data_dir() / "ml-100k" / "u.data"``.
    dtype : numpy dtype, default numpy.float32
        dtype of the stored values (all equal to 1).

    Returns
    -------
    scipy.sparse.coo_matrix
        Matrix of shape ``(943, 1682)`` with value 1 at every positive
        (user, item) pair; ids are converted from 1-based to 0-based.

    Raises
    ------
    FileNotFoundError
        If ``u.data`` cannot be found.
    """
    if path is None:
        path = data_dir() / "ml-100k" / "u.data"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MovieLens 100k not found at {path}; set FASTRANK_DATA to the "
            "folder that contains ml-100k/u.data"
        )
    raw = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    users, items, ratings = raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2]
    keep = ratings >= min_rating
    users, items = users[keep], items[keep]
    mat = sp.coo_matrix(
        (np.ones(users.shape[0], dtype=dtype), (users.astype(np.int32), items.astype(np.int32))),
        shape=ML100K_SHAPE,
    )
    mat.sum_duplicates()  # u.data has no duplicates; this also sorts row-major
    mat.data[:] = 1
    return mat


def _power_law_probabilities(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities proportional to ``(rank + 1) ** -exponent``.

    The ranks are randomly permuted over the ids so that popular ids are not
    all clustered at the start of the id range.
    """
    weights = (np.arange(n, dtype=np.float64) + 1.0) ** (-float(exponent))
    weights = weights[rng.permutation(n)]
    return weights / weights.sum()


def make_power_law(
    n_users: int = 50_000,
    n_items: int = 20_000,
    n_interactions: int = 1_000_000,
    item_exponent: float = 0.8,
    user_exponent: float = 0.5,
    seed: int = 42,
    dtype=np.float32,
) -> sp.coo_matrix:
    """Generate a synthetic implicit-feedback matrix with power-law marginals.

    Users and items are drawn independently; item ``i`` of popularity rank
    ``r_i`` has probability proportional to ``(r_i + 1) ** -item_exponent``
    and users likewise with ``user_exponent``. Duplicate (user, item) pairs
    are discarded and sampling continues until exactly ``n_interactions``
    unique pairs exist (the first unique pairs in sampling order are kept,
    so the result is fully determined by ``seed``).

    Parameters
    ----------
    n_users, n_items : int
        Matrix shape.
    n_interactions : int
        Number of unique positive entries. Must be well below
        ``n_users * n_items``.
    item_exponent : float, default 0.8
        Power-law exponent of item popularity.
    user_exponent : float, default 0.5
        Power-law exponent of user activity (milder than the item one so
        the most active user does not saturate the item catalogue).
    seed : int, default 42
        Seed of the :class:`numpy.random.Generator`.
    dtype : numpy dtype, default numpy.float32
        dtype of the stored values (all equal to 1).

    Returns
    -------
    scipy.sparse.coo_matrix
        Binary matrix of shape ``(n_users, n_items)`` with exactly
        ``n_interactions`` entries, in row-major (user, item) order.
    """
    total = int(n_users) * int(n_items)
    if not 0 < n_interactions <= total // 2:
        raise ValueError("n_interactions must be positive and at most half of the matrix")
    rng = np.random.default_rng(seed)
    p_user = _power_law_probabilities(n_users, user_exponent, rng)
    p_item = _power_law_probabilities(n_items, item_exponent, rng)

    keys = np.empty(0, dtype=np.int64)
    while True:
        missing = n_interactions - keys.shape[0]
        batch = int(missing * 1.3) + 1024
        u = rng.choice(n_users, size=batch, p=p_user)
        i = rng.choice(n_items, size=batch, p=p_item)
        keys = np.concatenate([keys, u.astype(np.int64) * n_items + i])
        # first occurrence of every key, in sampling order
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
        if keys.shape[0] >= n_interactions:
            keys = keys[:n_interactions]
            break

    keys.sort()
    rows = (keys // n_items).astype(np.int32)
    cols = (keys % n_items).astype(np.int32)
    data = np.ones(n_interactions, dtype=dtype)
    return sp.coo_matrix((data, (rows, cols)), shape=(n_users, n_items))


def make_power_law_fast(
    n_users: int = 1_000_000,
    n_items: int = 200_000,
    n_interactions: int = 20_000_000,
    item_exponent: float = 0.8,
    user_exponent: float = 0.5,
    seed: int = 42,
    dtype=np.float32,
    oversample: float = 1.05,
) -> sp.coo_matrix:
    """Power-law matrix like :func:`make_power_law`, built fast enough for tens of millions of pairs.

    Same marginals (item ``i`` of popularity rank ``r_i`` drawn with probability proportional to
    ``(r_i + 1) ** -item_exponent``, users likewise, users and items independent), but generated
    in a few vectorised passes instead of :func:`make_power_law`'s first-occurrence bookkeeping
    (an argsort with ``return_index`` over all keys on every round), which is slow and memory
    hungry at 20M pairs:

    * user draws: ``multinomial(batch, p_user)`` counts expanded with ``np.repeat`` (the same
      multiset as ``batch`` i.i.d. draws, already sorted, no binary search per draw);
    * item draws: inverse CDF (``searchsorted``) of uniforms, independent of the users, so
      pairing them with the sorted user draws still gives i.i.d. (user, item) pairs;
    * dedupe: one in-place sort of the int64 keys ``user * n_items + item`` and a neighbour
      comparison; if duplicates left too few pairs, more are drawn and merged the same way;
    * the surplus unique pairs (about ``oversample - 1`` of the target) are dropped uniformly at
      random, which keeps the pairs an unbiased sample of the distinct sampled pairs.

    About 6 s and ~0.6 GB peak for 20M pairs on 1,000,000 x 200,000. The result is determined by
    ``seed`` but differs from :func:`make_power_law`'s for the same seed (use that one to
    reproduce the other benchmarks' 50,000 x 20,000 x 1,000,000 set).

    Parameters
    ----------
    n_users, n_items, n_interactions, item_exponent, user_exponent, seed, dtype
        As in :func:`make_power_law`.
    oversample : float, default 1.05
        Draws per requested pair in the first round.

    Returns
    -------
    scipy.sparse.coo_matrix
        Binary matrix of shape ``(n_users, n_items)`` with exactly ``n_interactions`` entries,
        int32 row/col, in row-major (user, item) order.
    """
    total = int(n_users) * int(n_items)
    if not 0 < n_interactions <= total // 2:
        raise ValueError("n_interactions must be positive and at most half of the matrix")
    if n_users >= 2**31 or n_items >= 2**31:
        raise ValueError("n_users and n_items must fit in int32")
    rng = np.random.default_rng(seed)
    p_user = _power_law_probabilities(n_users, user_exponent, rng)
    p_item = _power_law_probabilities(n_items, item_exponent, rng)
    cdf_item = np.cumsum(p_item)
    cdf_item /= cdf_item[-1]

    keys = np.empty(0, dtype=np.int64)
    missing = int(n_interactions)
    while missing > 0:
        batch = int(missing * oversample) + 1024
        new = np.repeat(np.arange(n_users, dtype=np.int64), rng.multinomial(batch, p_user))
        items = np.searchsorted(cdf_item, rng.random(batch), side="right")
        np.minimum(items, n_items - 1, out=items)  # guards the last bin against rounding
        new *= n_items
        new += items
        del items
        keys = np.concatenate([keys, new]) if keys.size else new
        del new
        keys.sort()
        keep = np.empty(keys.shape[0], dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
        del keep
        missing = int(n_interactions) - keys.shape[0]
        oversample = max(oversample, 1.5)  # later rounds top up a small remainder
    if missing < 0:
        keys = np.delete(keys, rng.choice(keys.shape[0], -missing, replace=False))

    rows = (keys // n_items).astype(np.int32)
    cols = (keys % n_items).astype(np.int32)
    del keys
    data = np.ones(n_interactions, dtype=dtype)
    return sp.coo_matrix((data, (rows, cols)), shape=(n_users, n_items))


def describe_matrix(mat: sp.spmatrix) -> str:
    """One-line summary (shape, nnz, density, user/item activity) of a matrix.

    Parameters
    ----------
    mat : scipy.sparse matrix
        Interaction matrix (users x items).

    Returns
    -------
    str
        Human readable description.
    """
    csr = sp.csr_matrix(mat)
    per_user = np.diff(csr.indptr)
    per_item = np.bincount(csr.indices, minlength=csr.shape[1])
    return (
        f"{csr.shape[0]} users x {csr.shape[1]} items, nnz={csr.nnz:,} "
        f"(density {csr.nnz / (csr.shape[0] * csr.shape[1]):.2e}); "
        f"users with >=1 positive: {(per_user > 0).sum():,}, "
        f"max/user {per_user.max():,}, max/item {per_item.max():,}"
    )


# ---------------------------------------------------------------------------
# Optional imports
# ---------------------------------------------------------------------------


@dataclass
class OptionalModule:
    """Result of :func:`try_import`.

    Attributes
    ----------
    name : str
        Import name.
    module : module or None
        The module, or None when it could not be imported.
    error : str
        Why the import failed ("" on success).
    """

    name: str
    module: object = None
    error: str = ""

    @property
    def available(self) -> bool:
        """True when the module was imported."""
        return self.module is not None

    @property
    def status(self) -> str:
        """"ok", "not installed" (module absent) or "import failed" (present but broken)."""
        if self.module is not None:
            return "ok"
        top = self.name.split(".")[0]
        if self.error.startswith(("ModuleNotFoundError: No module named '%s'" % top,
                                  "ModuleNotFoundError: No module named '%s'" % self.name)):
            return "not installed"
        return "import failed"

    @property
    def version(self) -> str:
        """``__version__`` of the module, or its :attr:`status` when missing."""
        if self.module is None:
            return self.status
        return str(getattr(self.module, "__version__", "unknown"))


def try_import(name: str) -> OptionalModule:
    """Import a module by name without failing when it is missing or broken.

    Parameters
    ----------
    name : str
        Dotted module name.

    Returns
    -------
    OptionalModule
        Holder for the module or the import error message.
    """
    try:
        return OptionalModule(name, importlib.import_module(name))
    except Exception as exc:  # ImportError, or a broken compiled extension
        return OptionalModule(name, None, f"{type(exc).__name__}: {exc}")


def environment_summary(modules: Sequence[OptionalModule] = ()) -> List[str]:
    """Lines describing interpreter, CPU and library versions.

    Parameters
    ----------
    modules : sequence of OptionalModule
        Libraries whose versions are reported in addition to numpy/scipy.

    Returns
    -------
    list of str
    """
    import scipy

    lines = [
        f"python {platform.python_version()} ({platform.machine()}), "
        f"os.cpu_count()={os.cpu_count()}, "
        f"usable cpus={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}",
        f"cpu: {_cpu_model()}",
        f"numpy {np.__version__}, scipy {scipy.__version__}",
        load_average(),
    ]
    for mod in modules:
        lines.append(f"{mod.name} {mod.version}")
    return lines


def load_average() -> str:
    """Return the 1/5/15-minute load averages as text (noise indicator).

    Returns
    -------
    str
        e.g. ``"load average 0.52 0.67 0.36"``, or ``"load average n/a"``.
    """
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return "load average n/a"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


_CORE_LATENCY_BINARY: List[Optional[str]] = []  # compiled once per process; [None] if it cannot be


def core_round_trip_ns(round_trips: int = 200_000) -> Optional[float]:
    """Nanoseconds per cache-line round trip between the first two usable CPUs.

    Compiles ``core_latency.c`` with ``$CC`` (default ``cc``) on first use and runs it. What one
    Hogwild thread pays when it writes a row the other core wrote last; on a virtual machine it
    changes with where the host places the virtual CPUs, which moves multi-thread timings.

    Returns
    -------
    float or None
        None when there are fewer than two usable CPUs, no C compiler, or the run fails.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None
    if not _CORE_LATENCY_BINARY:
        compiler = shutil.which(os.environ.get("CC", "cc"))
        binary = os.path.join(tempfile.mkdtemp(prefix="fastrank-bench-"), "core_latency")
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_latency.c")
        built = compiler is not None and subprocess.run(
            [compiler, "-O2", "-pthread", "-o", binary, source], capture_output=True).returncode == 0
        _CORE_LATENCY_BINARY.append(binary if built else None)
    if _CORE_LATENCY_BINARY[0] is None:
        return None
    try:
        done = subprocess.run([_CORE_LATENCY_BINARY[0], str(cpus[0]), str(cpus[1]), str(round_trips)],
                              capture_output=True, text=True, timeout=30)
        return float(done.stdout) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


def format_round_trip(nanoseconds: Optional[float]) -> str:
    """A :func:`core_round_trip_ns` result as text (``"n/a"`` when it could not be measured)."""
    return "n/a" if nanoseconds is None else f"{nanoseconds:.0f} ns"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock times of repeated calls of one benchmark step.

    Attributes
    ----------
    seconds : list of float
        Duration of each timed call (warm-up calls excluded).
    warmup_seconds : list of float
        Duration of each warm-up call.
    """

    seconds: List[float] = field(default_factory=list)
    warmup_seconds: List[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """Shortest timed call."""
        return min(self.seconds)

    @property
    def median(self) -> float:
        """Median timed call."""
        return statistics.median(self.seconds)

    def stat(self, name: str) -> float:
        """Return ``best`` or ``median`` by name."""
        if name == "best":
            return self.best
        if name == "median":
            return self.median
        raise ValueError(f"unknown statistic {name!r}")


def time_repeated(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Timing:
    """Time ``fn()`` with :func:`time.perf_counter`.

    Parameters
    ----------
    fn : callable
        Zero-argument callable, e.g. one training epoch.
    repeats : int
        Number of timed calls (at least 1).
    warmup : int, default 1
        Number of untimed calls made first (their durations are still
        recorded in ``Timing.warmup_seconds``).

    Returns
    -------
    Timing
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    timing = Timing()
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        timing.warmup_seconds.append(time.perf_counter() - t0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        timing.seconds.append(time.perf_counter() - t0)
    return timing


def time_interleaved(steps: Sequence[Callable[[], object]], repeats: int, warmup: int = 1) -> List[Timing]:
    """Time several one-epoch steps in turns: each timed turn runs every step once, right after
    one another, the first turn in the given order, the next in reverse, and so on.

    A shared virtual machine has slow spells of a fraction of a second to seconds (on the
    2-core development VM, single-thread epochs switched between two speeds 1.5x apart). Steps
    timed one after the other mostly fall in the same spell, so the ratio of their durations
    within a turn (:func:`turn_ratios`) holds where a ratio of medians taken minutes apart does
    not; the alternating order keeps a trend (a model getting slower to train) from favouring
    the step that runs first.

    Parameters
    ----------
    steps : sequence of callables
        Zero-argument callables, e.g. one training epoch of each model (at least 2).
    repeats : int
        Number of timed turns (at least 1).
    warmup : int, default 1
        Untimed turns made first (in the given order).

    Returns
    -------
    list of Timing
        One per step, in the order of ``steps``; ``seconds[i]`` of each comes from turn ``i``.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if len(steps) < 2:
        raise ValueError("time_interleaved needs at least two steps")
    timings = [Timing() for _ in steps]
    for _ in range(warmup):
        for step, timing in zip(steps, timings):
            t0 = time.perf_counter()
            step()
            timing.warmup_seconds.append(time.perf_counter() - t0)
    order = list(range(len(steps)))
    for turn in range(repeats):
        for index in (order if turn % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            steps[index]()
            timings[index].seconds.append(time.perf_counter() - t0)
    return timings


def turn_ratios(slower: Timing, faster: Timing) -> List[float]:
    """Per turn of :func:`time_interleaved`, how many times longer ``slower``'s call took than
    ``faster``'s (a speed-up of ``faster`` over ``slower``)."""
    return [a / b for a, b in zip(slower.seconds, faster.seconds)]


def fmt_spread(ratios: Sequence[float]) -> str:
    """``median (min-max)`` of ratios, e.g. ``6.29x (4.76-7.83)``."""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def csv_list(value: str) -> List[str]:
    """A comma-separated command-line value as a list of its non-empty, stripped parts."""
    return [v.strip() for v in value.split(",") if v.strip()]


def csv_ints(value: str) -> List[int]:
    """A comma-separated command-line value as integers ("1e6" allowed)."""
    return [int(float(v)) for v in csv_list(value)]


def median_measured(values: Sequence[Optional[float]]) -> Optional[float]:
    """Median of the values that were measured (not None), or None when none were."""
    measured = [v for v in values if v is not None]
    return statistics.median(measured) if measured else None


def fmt_rate(value: Optional[float]) -> str:
    """Format a throughput (items per second) with thousands separators."""
    if value is None:
        return "-"
    return f"{value:,.0f}"


def fmt_ratio(value: Optional[float]) -> str:
    """Format a ratio such as a speed-up (``1.23x``)."""
    if value is None:
        return "-"
    return f"{value:.2f}x"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False) -> str:
    """Render rows as an aligned plain-text or GitHub markdown table.

    Parameters
    ----------
    headers : sequence of str
        Column titles.
    rows : sequence of sequences
        Cell values (converted with ``str``).
    markdown : bool, default False
        Emit a GitHub-flavoured markdown table instead of plain text.
        Columns other than the first two are right-aligned.

    Returns
    -------
    str
    """
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for j, c in enumerate(row):
            widths[j] = max(widths[j], len(c))

    def align(j: int, text: str) -> str:
        return text.ljust(widths[j]) if j < 2 else text.rjust(widths[j])

    if markdown:
        sep = ["-" * max(3, w - 1) + (":" if j >= 2 else "-") for j, w in enumerate(widths)]
        lines = ["| " + " | ".join(align(j, h) for j, h in enumerate(headers)) + " |"]
        lines.append("| " + " | ".join(sep) + " |")
        lines += ["| " + " | ".join(align(j, c) for j, c in enumerate(row)) + " |" for row in cells]
    else:
        lines = ["  ".join(align(j, h) for j, h in enumerate(headers))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(align(j, c) for j, c in enumerate(row)) for row in cells]
    return "\n".join(lines)


def save_figure(figure, directory, name: str, dpi: int = 120) -> str:
    """Lay out ``figure``, write it as ``directory/name`` (creating the folder), close it and
    return the path."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return str(path)


def holdout_split(mat: sp.spmatrix, test_fraction: float = 0.2, seed: int = 0) -> Tuple[sp.coo_matrix, sp.coo_matrix]:
    """A random (train, test) split of the entries of ``mat``, both COO float32 of its shape."""
    coo = mat.tocoo()
    in_test = np.random.default_rng(seed).random(coo.nnz) < test_fraction

    def part(mask):
        return sp.coo_matrix((coo.data[mask].astype(np.float32), (coo.row[mask], coo.col[mask])),
                             shape=coo.shape)

    return part(~in_test), part(in_test)


def holdout_accuracy(user_vectors: np.ndarray, item_vectors: np.ndarray, item_biases: Optional[np.ndarray],
                     train: sp.spmatrix, test: sp.spmatrix, k: int = 10, max_users: Optional[int] = 2000,
                     seed: int = 0, block: int = 256, user_biases: Optional[np.ndarray] = None
                     ) -> Tuple[float, float, int]:
    """Test precision@k and AUC of a factor model, one implementation for every library.

    Scores are ``user_vectors @ item_vectors.T + item_biases + user_biases`` in float64 (either
    bias may be None; implicit's bias lives in its factors: a column of ones in the user vectors,
    the item bias in the item vectors), computed for ``block`` users at a time. Candidates are
    the items not in the user's training row; test entries that are also training entries are
    dropped. Ties count against the test item in both metrics (pessimistic), so a model that
    scores everything alike gets precision 0 and AUC 0, never credit; a NaN score counts as the
    lowest score.

    * precision@k: a test item is a hit when fewer than ``k`` other candidates score at least as
      high as it; the user's hits divided by ``k`` (LightFM's convention; at most 1).
    * AUC: per test item, the share of the user's negatives (candidates that are not test items)
      scoring strictly lower; averaged over the user's test items (users without negatives are
      left out of the AUC).

    Both are averaged over the users with test items, or over a fixed random sample (``seed``) of
    ``max_users`` of them when there are more.

    Returns
    -------
    (precision, auc, n_users_evaluated)
    """
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test, dtype=np.float64)
    test.data[:] = 1.0
    test = test - test.multiply(train != 0)  # an entry in both splits is a training entry
    test.eliminate_zeros()
    test.sort_indices()
    users = np.flatnonzero(np.diff(test.indptr))
    if max_users is not None and users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    items = np.asarray(item_vectors, dtype=np.float64)
    item_bias = None if item_biases is None else np.asarray(item_biases, dtype=np.float64).reshape(1, -1)
    hits = np.zeros(users.size)
    auc_sum = np.zeros(users.size)
    has_negatives = np.zeros(users.size, dtype=bool)
    # pairs (test item of a user) are compared with their user's whole row, a few at a time
    pair_chunk = max(1, 2_000_000 // max(1, items.shape[0]))
    for first in range(0, users.size, block):
        chunk = users[first:first + block]
        scores = np.asarray(user_vectors[chunk], dtype=np.float64) @ items.T
        if item_bias is not None:
            scores += item_bias
        if user_biases is not None:
            scores += np.asarray(user_biases, dtype=np.float64)[chunk, None]
        scores[np.isnan(scores)] = -np.inf
        # candidates: NaN marks a training item (NaN compares False both ways, so it is never counted)
        seen = train[chunk]
        scores[np.repeat(np.arange(chunk.size), np.diff(seen.indptr)), seen.indices] = np.nan
        truth = test[chunk]
        pair_rows = np.repeat(np.arange(chunk.size), np.diff(truth.indptr))
        pair_items = truth.indices
        pair_scores = scores[pair_rows, pair_items]
        # negatives: candidates that are not test items
        negatives = scores.copy()
        negatives[pair_rows, pair_items] = np.nan
        n_negatives = np.count_nonzero(~np.isnan(negatives), axis=1)
        at_least = np.empty(pair_rows.size, dtype=np.int64)
        below = np.empty(pair_rows.size, dtype=np.int64)
        for p in range(0, pair_rows.size, pair_chunk):
            rows, values = pair_rows[p:p + pair_chunk], pair_scores[p:p + pair_chunk, None]
            at_least[p:p + pair_chunk] = np.count_nonzero(scores[rows] >= values, axis=1)
            below[p:p + pair_chunk] = np.count_nonzero(negatives[rows] < values, axis=1)
        # at_least counts the test item itself
        hits[first:first + chunk.size] = np.bincount(pair_rows, weights=(at_least - 1 < k), minlength=chunk.size)
        n_pairs = np.diff(truth.indptr)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = below / n_negatives[pair_rows]
            auc_sum[first:first + chunk.size] = (np.bincount(pair_rows, weights=np.nan_to_num(share),
                                                             minlength=chunk.size) / n_pairs)
        has_negatives[first:first + chunk.size] = n_negatives > 0
    auc = float(auc_sum[has_negatives].mean()) if has_negatives.any() else float("nan")
    return float(np.mean(hits / k)), auc, int(users.size)
