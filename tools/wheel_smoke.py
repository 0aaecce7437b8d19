"""Smoke test of an INSTALLED fastrank (a wheel), run from outside the source tree.

Used by ``make wheel`` (on the auditwheel-repaired wheel in a fresh virtual environment), by
cibuildwheel's test-command and by the install-and-test job of .github/workflows/wheels.yml.

Checks that ``import fastrank`` resolves to site-packages (not a checkout), that the kernels were
built with OpenMP (``--allow-no-openmp`` to accept a single-threaded build), that no generated C
or build leftovers were packaged, then fits a tiny model with every loss, predicts, ranks,
recommends, round-trips save/load and runs the ``fastrank`` command and ``python -m fastrank``.
Exits non-zero with a message on the first failure. Python 3.9 compatible.
"""

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path


def fail(message):
    print(f"wheel smoke test FAILED: {message}", file=sys.stderr)
    os.chdir(os.path.expanduser("~"))  # leave the temporary directory so that it can be removed (Windows)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def installed_location():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastrank
    package_dir = Path(fastrank.__file__).resolve().parent
    site_dirs = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    check(
        any(site in package_dir.parents for site in site_dirs),
        f"fastrank was imported from {package_dir}, not from site-packages {sorted(map(str, site_dirs))}: "
        "the test would not exercise the installed wheel",
    )
    check(not (package_dir.parent / "setup.py").exists(), f"{package_dir} is inside a source tree")
    return fastrank, package_dir, caught


def packaged_files(package_dir):
    names = sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*") if p.is_file())
    generated_c = [n for n in names if n.endswith((".c", ".cpp", ".html"))]
    check(not generated_c, f"generated sources were packaged: {generated_c}")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for module in ("_sgd", "_ranking", "_sparse"):
        check(f"{module}{suffix}" in names, f"compiled extension {module}{suffix} missing from {names}")
    for source in ("_sgd.pyx", "_ranking.pyx", "_sparse.pyx", "_common.pxd", "_simd.h"):
        check(source in names, f"{source} missing from the installed package")
    return names


def exercise_model(fastrank, threads):
    import numpy as np
    import scipy.sparse as sp

    from fastrank import FastRank, evaluation

    rng = np.random.default_rng(0)
    n_users, n_items = 60, 40
    dense = (rng.random((n_users, n_items)) < 0.15).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # every user has a positive
    interactions = sp.coo_matrix(dense)
    user_features = sp.hstack([sp.identity(n_users, format="csr"), sp.csr_matrix(rng.random((n_users, 3)))]).tocsr()

    users = np.repeat(np.arange(n_users, dtype=np.int32), n_items * 200)
    items = np.tile(np.arange(n_items, dtype=np.int32), n_users * 200)

    with tempfile.TemporaryDirectory() as tmp:
        for loss in ("warp", "bpr", "warp-kos", "logistic"):
            model = FastRank(no_components=8, loss=loss, random_state=1)
            model.fit(interactions, user_features=user_features, epochs=3, num_threads=threads)
            scores = model.predict(np.zeros(n_items, dtype=np.int32), np.arange(n_items, dtype=np.int32),
                                   user_features=user_features)
            check(scores.shape == (n_items,) and np.isfinite(scores).all(), f"{loss}: bad predict output")
            ranks = model.predict_rank(interactions, user_features=user_features, num_threads=threads)
            check(ranks.shape == (n_users, n_items), f"{loss}: predict_rank shape {ranks.shape}")
            top_ids, top_scores = model.recommend([0, 1], k=5, user_features=user_features, num_threads=threads)
            check(top_ids.shape == (2, 5), f"{loss}: recommend shape {top_ids.shape}")
            metrics = evaluation.ranking_metrics(model, interactions, user_features=user_features, k=5,
                                                 num_threads=threads)
            check(all(0 <= float(values.mean()) <= 1 for values in metrics.values()), f"{loss}: metrics {metrics}")
            path = os.path.join(tmp, f"{loss}.npz")
            model.save(path)
            loaded = FastRank.load(path)
            again = loaded.predict(np.zeros(n_items, dtype=np.int32), np.arange(n_items, dtype=np.int32),
                                   user_features=user_features)
            check(np.array_equal(scores, again), f"{loss}: predictions differ after save/load")
            # Multi-threaded scoring must give exactly the single-threaded scores (Hogwild is for
            # training only): many pairs and repeated calls, so that a race between threads shows.
            single = model.predict(users, items, user_features=user_features, num_threads=1)
            mismatches = [int((model.predict(users, items, user_features=user_features, num_threads=threads)
                               != single).sum()) for _ in range(10)]
            check(sum(mismatches) == 0,
                  f"{loss}: predict with num_threads={threads} differs from num_threads=1 on {mismatches} of "
                  f"{single.size} pairs in 10 calls (a data race in the scoring kernel)")
            print(f"  {loss:<9} fit, predict ({threads} threads = 1 thread), predict_rank, recommend, "
                  "save/load round trip: ok")


def run_command(argv, what):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    check(result.returncode == 0, f"{what} exited {result.returncode}: {result.stderr[-1000:]}")
    check("usage" in result.stdout.lower(), f"{what} printed no usage: {result.stdout[-500:]}")
    print(f"  {what}: ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-no-openmp", action="store_true",
                        help="accept a build without OpenMP (single-threaded kernels)")
    args = parser.parse_args()

    # Run from a directory without fastrank/ in it, so a stray source tree cannot shadow the wheel.
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        sys.path[:] = [p for p in sys.path if p not in ("", ".", os.path.dirname(os.path.abspath(__file__)))]
        fastrank, package_dir, import_warnings = installed_location()
        print(f"fastrank {fastrank.__version__} from {package_dir}")
        print(f"  instruction set: {fastrank.instruction_set}; OpenMP: {fastrank.openmp_enabled()}")
        if not args.allow_no_openmp:
            check(fastrank.openmp_enabled(), "the wheel was built without OpenMP")
            openmp_warnings = [str(w.message) for w in import_warnings if "OpenMP" in str(w.message)]
            check(not openmp_warnings, f"import warned: {openmp_warnings}")
        names = packaged_files(package_dir)
        print(f"  {len(names)} files installed, no generated C")
        exercise_model(fastrank, threads=2)
        run_command([sys.executable, "-m", "fastrank", "--help"], "python -m fastrank --help")
        run_command([sys.executable, "-m", "fastrank", "demo", "--help"], "python -m fastrank demo --help")
        scripts = Path(sysconfig.get_paths()["scripts"])
        console = shutil.which("fastrank", path=str(scripts))
        check(console is not None, f"console script 'fastrank' not installed in {scripts}")
        run_command([console, "--help"], "fastrank --help (console script)")
        os.chdir(os.path.expanduser("~"))
    print("wheel smoke test passed")


if __name__ == "__main__":
    main()
