"""LightFM timings measured by another interpreter (a worker process), read back as JSON.

lightfm-next installs a package named ``lightfm``, like rectools-lightfm, so it cannot share
``.bench-venv``: ``benchmarks/make_peer_venv.sh`` puts it into ``.bench-venv-next``. To still
measure it side by side in one run, a benchmark

1. creates a :class:`WorkerPeer` for that venv's interpreter (``--lightfm-next-python``);
2. writes its matrices once to a temporary ``.npz`` (:meth:`WorkerPeer.write_data`: the very
   same arrays, format and dtypes as the in-process LightFM column gets);
3. asks for one measurement per table cell (:meth:`WorkerPeer.train_timing`,
   :meth:`WorkerPeer.evaluate`), right after the in-process LightFM measurement of that cell.

Run as a script (``python _lightfm_worker.py JOB.json OUT.json``) by that interpreter, this file
imports ``lightfm`` from there, builds the model with the keyword arguments it was given, times
it with ``_common.time_repeated`` exactly like the LightFM column (same warm-up and timed calls;
the parent takes the same statistic of the returned seconds) and writes the result as JSON.
Only the interpreter's start, the imports and the loading of the ``.npz`` happen outside the
timed calls, which is why they do not count. Every cell is a fresh worker process, as every
LightFM cell is a fresh model.

The worker needs only numpy, scipy and lightfm (it imports ``_common`` and, for the evaluation
job, ``evaluation_speed.lightfm_recommend`` from this folder, so the recommend loop is the same
code for both LightFM columns).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent

#: Default interpreter of the lightfm-next venv made by make_peer_venv.sh.
DEFAULT_NEXT_PYTHON = HERE.parent / ".bench-venv-next" / "bin" / "python"

#: Written by make_peer_venv.sh into the venv when lightfm-next did not build or import.
BUILD_FAILED_MARKER = "LIGHTFM_NEXT_BUILD_FAILED"

#: Seconds allowed for one worker process (a LightFM evaluation at full size takes minutes).
WORKER_TIMEOUT = 3600


# ---------------------------------------------------------------------------
# Matrices to and from one .npz (several sparse matrices, format and dtypes preserved)
# ---------------------------------------------------------------------------


def save_arrays(path, **arrays) -> None:
    """Write scipy.sparse COO/CSR matrices and numpy arrays by name into one ``.npz``."""
    import numpy as np
    import scipy.sparse as sp

    fields = {}
    for name, value in arrays.items():
        if sp.issparse(value):
            fmt = value.format
            if fmt == "coo":
                parts = {"row": value.row, "col": value.col, "data": value.data}
            elif fmt == "csr":
                parts = {"indptr": value.indptr, "indices": value.indices, "data": value.data}
            else:
                raise ValueError(f"{name}: only COO and CSR matrices are supported, got {fmt}")
            fields[f"{name}.format"] = np.array(fmt)
            fields[f"{name}.shape"] = np.array(value.shape, dtype=np.int64)
            fields.update({f"{name}.{key}": part for key, part in parts.items()})
        else:
            fields[f"{name}.format"] = np.array("dense")
            fields[f"{name}.array"] = np.asarray(value)
    np.savez(path, **fields)


def load_arrays(path) -> Dict[str, object]:
    """Read back what :func:`save_arrays` wrote: same formats, index and value dtypes."""
    import numpy as np
    import scipy.sparse as sp

    out = {}
    with np.load(path, allow_pickle=False) as stored:
        names = sorted({key.rsplit(".", 1)[0] for key in stored.files})
        for name in names:
            fmt = str(stored[f"{name}.format"])
            if fmt == "dense":
                out[name] = stored[f"{name}.array"]
                continue
            shape = tuple(int(x) for x in stored[f"{name}.shape"])
            if fmt == "coo":
                out[name] = sp.coo_matrix((stored[f"{name}.data"], (stored[f"{name}.row"], stored[f"{name}.col"])),
                                          shape=shape)
            else:
                out[name] = sp.csr_matrix((stored[f"{name}.data"], stored[f"{name}.indices"],
                                           stored[f"{name}.indptr"]), shape=shape)
    return out


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


class WorkerPeer:
    """A LightFM installed in another interpreter, measured through worker processes.

    Has the ``available`` / ``status`` / ``version`` / ``error`` attributes of
    ``_common.OptionalModule``, so the tables treat it like an in-process peer.

    Parameters
    ----------
    python : path-like or None
        Interpreter of the other venv. None, "" or a missing file: "not installed".
    label : str
        Name of the peer in tables and messages.
    """

    def __init__(self, python, label: str = "lightfm-next"):
        self.label = label
        # absolute but not resolved: a venv's bin/python is a symlink to the base interpreter
        self.python = os.path.abspath(str(python)) if python else ""
        self.name = label
        self.module = None
        self.error = ""
        self.version = "not installed"
        self.status = "not installed"
        self.detail = ""
        self._scratch = None
        self._data: Dict[int, str] = {}
        if not self.python or not os.path.exists(self.python):
            self.error = f"no interpreter at {self.python!r}" if self.python else "no interpreter given"
            return
        marker = Path(self.python).parent.parent / BUILD_FAILED_MARKER
        if marker.exists():
            self.status = self.version = "failed to build"
            self.error = f"see {marker}"
            return
        try:
            info = self._call({"job": "probe"})
        except RuntimeError as exc:
            self.error = str(exc)
            self.status = self.version = ("not installed" if "No module named 'lightfm'" in self.error
                                          else "import failed")
            return
        from _common import display_path

        self.module = info
        self.status = "ok"
        self.version = info.get("distribution_version") or info.get("lightfm_version", "unknown")
        self.detail = (f"{label} {self.version} (imported as lightfm {info.get('lightfm_version')}, "
                       f"numpy {info.get('numpy')}, scipy {info.get('scipy')}) in a worker process: "
                       f"{display_path(self.python)}")

    @property
    def available(self) -> bool:
        """True when the worker imported lightfm."""
        return self.status == "ok"

    def summary(self) -> str:
        """One line for the environment header."""
        if self.available:
            return self.detail
        return f"{self.label}: {self.status}" + (f" ({self.error})" if self.error else "")

    def write_data(self, **arrays) -> str:
        """Write matrices for later jobs to a temporary ``.npz``; returns its path."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="fastrank-bench-")
        path = os.path.join(self._scratch.name, f"data{len(self._data)}.npz")
        save_arrays(path, **arrays)
        self._data[len(self._data)] = path
        return path

    def close(self) -> None:
        """Remove the temporary data files."""
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def train_timing(self, data: str, model: dict, fit: dict, matrices: dict, repeats: int, warmup: int,
                     save_parameters: str = ""):
        """Warm-up + timed ``fit_partial`` calls of a fresh ``LightFM(**model)``, as a ``_common.Timing``.

        ``matrices`` maps ``fit_partial`` argument names (``interactions``, ``user_features``,
        ``item_features``) to names in ``data``; ``fit`` holds the other ``fit_partial`` arguments.
        With ``save_parameters`` (a path), the trained embeddings and biases (``user_embeddings``,
        ``item_embeddings``, ``item_biases``, ``user_biases``) are written there (read them with
        :func:`load_arrays`), so the parent scores them with the same code as every other library.
        """
        import _common as C

        out = self._call({"job": "train", "data": data, "model": model, "fit": fit, "matrices": matrices,
                          "repeats": repeats, "warmup": warmup, "save_parameters": save_parameters})
        return C.Timing(seconds=out["seconds"], warmup_seconds=out["warmup_seconds"])

    def evaluate(self, data: str, model: dict, fit: dict, k: int, repeats: int = 1, warmup: int = 0) -> dict:
        """Fit ``LightFM(**model)`` on ``train``; time precision@k + AUC and the predict-loop recommend.

        ``data`` holds ``train``, ``test`` (CSR) and ``users`` (the recommend users).
        Returns ``{"metrics": Timing, "recommend": Timing, "precision": float, "auc": float}``.
        """
        import _common as C

        out = self._call({"job": "evaluate", "data": data, "model": model, "fit": fit, "k": k,
                          "repeats": repeats, "warmup": warmup})
        for key in ("metrics", "recommend"):
            out[key] = C.Timing(seconds=out[key]["seconds"], warmup_seconds=out[key]["warmup_seconds"])
        return out

    def _call(self, job: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="fastrank-worker-") as scratch:
            job_path = os.path.join(scratch, "job.json")
            out_path = os.path.join(scratch, "out.json")
            with open(job_path, "w") as stream:
                json.dump(job, stream)
            # cwd: a scratch folder, so nothing in the current folder shadows the venv's lightfm
            try:
                completed = subprocess.run([self.python, str(Path(__file__).resolve()), job_path, out_path],
                                           capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=scratch)
            except (OSError, subprocess.SubprocessError) as exc:
                raise RuntimeError(f"{self.label} worker ({job['job']}): {type(exc).__name__}: {exc}") from exc
            result = None
            if os.path.exists(out_path):
                with open(out_path) as stream:
                    result = json.load(stream)
        if completed.returncode != 0 or result is None or "error" in result:
            message = (result or {}).get("error") or completed.stderr.strip().splitlines()[-1:] or ["no output"]
            if isinstance(message, list):
                message = message[0]
            raise RuntimeError(f"{self.label} worker ({job['job']}): {message}")
        return result


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def _timing_dict(timing) -> dict:
    return {"seconds": list(timing.seconds), "warmup_seconds": list(timing.warmup_seconds)}


def _probe() -> dict:
    import importlib.metadata as metadata

    import lightfm
    import numpy
    import scipy
    from lightfm import LightFM  # noqa: F401  (the compiled extension loads here)

    try:
        distribution = metadata.version("lightfm-next")
    except metadata.PackageNotFoundError:
        distribution = None
    return {"lightfm_version": getattr(lightfm, "__version__", "unknown"), "distribution_version": distribution,
            "file": lightfm.__file__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "python": sys.version.split()[0]}


def _train(job: dict) -> dict:
    import _common as C
    from lightfm import LightFM

    arrays = load_arrays(job["data"])
    given = {argument: arrays[name] for argument, name in job["matrices"].items()}
    model = LightFM(**job["model"])

    def step() -> None:
        model.fit_partial(**given, **job["fit"])

    timing = _timing_dict(C.time_repeated(step, repeats=job["repeats"], warmup=job["warmup"]))
    if job.get("save_parameters"):
        # the parent scores the trained model with the same code as every other library
        save_arrays(job["save_parameters"], user_embeddings=model.user_embeddings,
                    item_embeddings=model.item_embeddings, item_biases=model.item_biases,
                    user_biases=model.user_biases)
    return timing


def _evaluate(job: dict) -> dict:
    import _common as C
    from evaluation_speed import lightfm_recommend
    from lightfm import LightFM
    from lightfm.evaluation import auc_score, precision_at_k

    arrays = load_arrays(job["data"])
    train, test, users = arrays["train"], arrays["test"], arrays["users"]
    k = job["k"]
    model = LightFM(**job["model"])
    model.fit(train, **job["fit"])
    values = {}

    def metrics():
        values["precision"] = float(precision_at_k(model, test, train, k=k, num_threads=1).mean())
        values["auc"] = float(auc_score(model, test, train, num_threads=1).mean())

    metric_timing = C.time_repeated(metrics, repeats=job["repeats"], warmup=job["warmup"])
    recommend_timing = C.time_repeated(lambda: lightfm_recommend(model, users, train, k),
                                       repeats=job["repeats"], warmup=job["warmup"])
    return {"metrics": _timing_dict(metric_timing), "recommend": _timing_dict(recommend_timing), **values}


def worker_main(argv) -> int:
    """Run the job in ``argv[0]`` (JSON) and write the result to ``argv[1]``."""
    job_path, out_path = argv
    sys.path.insert(0, str(HERE))
    with open(job_path) as stream:
        job = json.load(stream)
    started = time.perf_counter()
    try:
        kind = job["job"]
        if kind == "probe":
            result = _probe()
        elif kind == "train":
            result = _train(job)
        elif kind == "evaluate":
            result = _evaluate(job)
        else:
            raise ValueError(f"unknown job {kind!r}")
        code = 0
    except Exception as exc:  # reported to the parent, which shows the cell as an error
        result = {"error": f"{type(exc).__name__}: {exc}"}
        code = 1
    result["worker_seconds"] = time.perf_counter() - started
    with open(out_path, "w") as stream:
        json.dump(result, stream)
    return code


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
