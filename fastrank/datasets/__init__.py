"""Dataset loaders and synthetic data generators.

Loaders find their files under a data home (the ``data_home`` argument, else ``$FASTRANK_DATA``,
else ``~/fastrank_data``) and download them when missing (standard-library HTTP, verified, written
atomically); pass ``download_if_missing=False`` to forbid the network, which raises ``OSError``
when the files are absent.

- :func:`fetch_movielens`: MovieLens 100K with genre item features and demographic user features.
- :func:`fetch_stackexchange`: LightFM's StackExchange answer data, split by time.
- :func:`make_popularity_triangle`, :func:`make_hybrid`: synthetic data.
"""

from fastrank.datasets._home import get_data_home
from fastrank.datasets.movielens import fetch_movielens
from fastrank.datasets.stackexchange import fetch_stackexchange
from fastrank.datasets.synthetic import make_hybrid, make_popularity_triangle

__all__ = ["get_data_home", "fetch_movielens", "fetch_stackexchange", "make_popularity_triangle", "make_hybrid"]
