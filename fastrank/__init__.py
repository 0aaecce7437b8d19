"""fastrank: a fast hybrid recommender with LightFM's API."""

import os as _os
import warnings as _warnings

from fastrank import _ranking, _sgd
from fastrank._sgd import openmp_enabled
from fastrank._version import __version__

# Each compiled module carries its own copy of the inner loops; both pick the same variant.
# FASTRANK_DISABLE_AVX2=1 forces the baseline loops (to compare, or on a misbehaving CPU).
_allow_avx2 = _os.environ.get("FASTRANK_DISABLE_AVX2", "") in ("", "0")
instruction_set = _sgd.select_instruction_set(_allow_avx2)
_ranking.select_instruction_set(_allow_avx2)

if not openmp_enabled():
    _warnings.warn(
        "fastrank was built without OpenMP: training and evaluation run on one thread. "
        "Rebuild with an OpenMP-capable compiler (on macOS: brew install libomp) for parallelism: "
        "pip install --no-cache-dir --force-reinstall fastrank (pip reuses a cached build otherwise).",
        RuntimeWarning,
        stacklevel=2,
    )

from fastrank._estimator import FastRank  # noqa: E402

__all__ = ["FastRank", "openmp_enabled", "instruction_set", "__version__"]
