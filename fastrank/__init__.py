"""fastrank: a fast hybrid recommender with LightFM's API."""

import warnings as _warnings

from fastrank._sgd import openmp_enabled
from fastrank._version import __version__

if not openmp_enabled():
    _warnings.warn(
        "fastrank was built without OpenMP: training and evaluation run on one thread. "
        "Rebuild with an OpenMP-capable compiler (on macOS: brew install libomp) for parallelism.",
        RuntimeWarning,
        stacklevel=2,
    )

from fastrank._estimator import FastRank  # noqa: E402

__all__ = ["FastRank", "openmp_enabled", "__version__"]
