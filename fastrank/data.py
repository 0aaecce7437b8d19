"""Build interaction and feature matrices from raw ids (LightFM-compatible ``Dataset``).

A :class:`Dataset` keeps four mappings: user ids to rows, item ids to rows, and, per side, feature
names to columns of the feature matrix. Code written for ``lightfm.data.Dataset`` keeps working
after ``from fastrank.data import Dataset``.

Conventions
-----------
- Ids and feature names are any hashable values (numpy scalars are stored as the equal Python
  scalars). User ids, item ids, user feature names and item feature names are four separate
  namespaces: a feature called ``"alice"`` is a different column from the identity column of user
  ``"alice"``.
- Indices are stable: :meth:`Dataset.fit_partial` appends new ids (rows) and new feature columns
  after the existing ones and never moves an existing one, so a model grown with
  :meth:`fastrank.FastRank.fit_partial` keeps its learned parameters aligned.
- Column order: with identity features enabled, every id owns one column, created when the id is
  first added. Within one ``fit``/``fit_partial`` call the new ids' identity columns come first and
  the new named features follow; after a plain :meth:`Dataset.fit`, all identity columns
  therefore precede all named features (``column == row`` for the identity part).
- Unknown ids or feature names raise ``ValueError`` naming them; malformed records raise
  ``ValueError`` (wrong length, NaN/inf weight) or ``TypeError`` (wrong kind of object).

pandas is optional: only :meth:`Dataset.from_frame` and :meth:`Dataset.build_interactions_from_frame`
need it, and they import it when called.
"""

import math

import numpy as np
import scipy.sparse as sp

from fastrank._validation import is_finite_real, is_real

__all__ = ["Dataset", "IdentityFeature"]


class IdentityFeature:
    """Key of an identity column in a feature map whose id is also used as a feature name.

    :meth:`Dataset.mapping` keys identity columns by the id itself, as LightFM does. Because ids and
    feature names are separate namespaces, an id can equal a feature name of the same side; only
    then is that id's identity column keyed by ``IdentityFeature(id)`` so both columns appear.

    Parameters
    ----------
    id : hashable
        The user or item id.
    """

    __slots__ = ("id",)

    def __init__(self, id):  # noqa: A002 - mirrors the attribute name
        self.id = id

    def __eq__(self, other):
        return isinstance(other, IdentityFeature) and self.id == other.id

    def __hash__(self):
        return hash((IdentityFeature, self.id))

    def __repr__(self):
        return f"IdentityFeature({self.id!r})"


def _plain(key):
    """numpy scalars become the equal Python scalar (so maps hold plain ints/strings)."""
    if isinstance(key, np.generic):
        return key.item()
    return key


def _check_key(key, what):
    key = _plain(key)
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"{what} must be hashable, got {type(key).__name__} {key!r}") from None
    if isinstance(key, float) and math.isnan(key):
        raise ValueError(f"{what} must not be NaN")
    return key


def _check_collection(values, name):
    """Reject strings/bytes/None where an iterable of ids or names is expected."""
    if values is None or isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be an iterable of ids or names, got {type(values).__name__} {values!r}")
    try:
        return iter(values)
    except TypeError:
        raise TypeError(f"{name} must be an iterable, got {type(values).__name__}") from None


def _check_weight(weight, where):
    if not is_real(weight):
        raise TypeError(f"weight of {where} must be a real number, got {weight!r}")
    if not is_finite_real(weight):
        raise ValueError(f"weight of {where} is {weight}; weights must be finite")
    return float(weight)


class _Side:
    """Ids and feature columns of one side (users or items)."""

    def __init__(self, kind, identity):
        self.kind = kind  # "user" or "item"
        self.identity = identity
        self.ids = {}  # id -> row
        self.features = {}  # feature name -> column
        self.identity_columns = []  # row -> its identity column (identity features only)
        self.n_columns = 0

    def add_ids(self, ids, name):
        for key in _check_collection(ids, name):
            key = _check_key(key, f"{self.kind} id")
            if key not in self.ids:
                self.ids[key] = len(self.ids)
                if self.identity:
                    self.identity_columns.append(self.n_columns)
                    self.n_columns += 1

    def add_features(self, features, name):
        for key in _check_collection(features, name):
            key = _check_key(key, f"{self.kind} feature name")
            if key not in self.features:
                self.features[key] = self.n_columns
                self.n_columns += 1

    def row(self, key, where):
        try:
            return self.ids[_plain(key)]
        except (KeyError, TypeError):
            raise ValueError(
                f"{self.kind} id {key!r} ({where}) is not in the dataset; add it with fit or fit_partial first"
            ) from None

    def column(self, key, where):
        try:
            return self.features[_plain(key)]
        except (KeyError, TypeError):
            raise ValueError(
                f"{self.kind} feature {key!r} ({where}) is not in the dataset; add it with fit or fit_partial first"
            ) from None

    def feature_map(self):
        mapping = {}
        for key, row in self.ids.items() if self.identity else ():
            label = IdentityFeature(key) if key in self.features else key
            mapping[label] = self.identity_columns[row]
        mapping.update(self.features)
        # in column order, as LightFM's dict (filled as columns are added): after fit_partial added
        # users and features, identity and named columns interleave
        return dict(sorted(mapping.items(), key=lambda entry: entry[1]))

    def build_features(self, data, normalize):
        n_rows = len(self.ids)
        rows, cols, values = [], [], []
        if self.identity:
            rows.extend(range(n_rows))
            cols.extend(self.identity_columns)
            values.extend([1.0] * n_rows)
        for position, record in enumerate(_check_collection(data, "data")):
            where = f"record {position}"
            if isinstance(record, (str, bytes, dict)) or not hasattr(record, "__len__"):
                raise TypeError(
                    f"{where} must be an ({self.kind}_id, features) pair, got {type(record).__name__} {record!r}"
                )
            if len(record) != 2:
                raise ValueError(
                    f"{where} has {len(record)} fields; expected ({self.kind}_id, [feature, ...]) "
                    f"or ({self.kind}_id, {{feature: weight}})"
                )
            key, features = record
            row = self.row(key, where)
            if isinstance(features, dict):
                pairs = features.items()
            elif isinstance(features, (str, bytes)) or not hasattr(features, "__iter__"):
                raise TypeError(
                    f"features of {self.kind} {key!r} ({where}) must be a list of names or a dict of "
                    f"name -> weight, got {type(features).__name__} {features!r}"
                )
            else:
                pairs = ((feature, 1.0) for feature in features)
            for feature, weight in pairs:
                column = self.column(feature, where)
                rows.append(row)
                cols.append(column)
                values.append(_check_weight(weight, f"feature {feature!r} of {self.kind} {key!r}"))
        matrix = sp.csr_matrix(
            (np.asarray(values, dtype=np.float64),
             (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(n_rows, self.n_columns),
        )
        with np.errstate(over="ignore"):
            matrix.sum_duplicates()
        # checked before normalising, which divides an infinite sum away (1 / inf = 0)
        if not np.all(np.isfinite(matrix.data)):
            raise ValueError(f"{self.kind} feature weights overflow: a feature's weights given in several "
                             "records sum beyond the float range")
        if normalize:
            with np.errstate(over="ignore"):
                norms = np.asarray(abs(matrix).sum(axis=1)).ravel()
            if not np.all(np.isfinite(norms)):
                raise ValueError(f"cannot normalize: a {self.kind}'s feature weights sum beyond the float range")
            empty = np.flatnonzero(norms == 0)
            if empty.size:
                ids_by_row = list(self.ids)
                names = [ids_by_row[row] for row in empty[:5]]
                more = f" and {empty.size - 5} more" if empty.size > 5 else ""
                raise ValueError(
                    f"cannot normalize: {self.kind}s {names}{more} have no features (an empty or all-zero row); "
                    f"give them features, enable {self.kind}_identity_features or pass normalize=False"
                )
            matrix = sp.diags(1.0 / norms) @ matrix
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if not np.all(np.isfinite(matrix.data)):
            raise ValueError(f"{self.kind} feature weights overflow float32")
        matrix.sort_indices()
        matrix.indptr = matrix.indptr.astype(np.int32, copy=False)
        matrix.indices = matrix.indices.astype(np.int32, copy=False)
        return matrix


class Dataset:
    """Map raw user/item ids and feature names to the matrices :class:`fastrank.FastRank` takes.

    Drop-in replacement for ``lightfm.data.Dataset``; see the module docstring for the
    conventions (separate namespaces for ids and feature names, stable indices, column order).

    Parameters
    ----------
    user_identity_features : bool, default True
        Give every user its own feature column (weight 1 before normalisation), so the model
        learns a per-user embedding on top of the user's named features.
    item_identity_features : bool, default True
        The same for items.

    Examples
    --------
    >>> dataset = Dataset()
    >>> dataset.fit(["alice", "bob"], ["book", "film"], item_features=["paper", "video"])
    >>> interactions, weights = dataset.build_interactions([("alice", "book"), ("bob", "film", 2.0)])
    >>> item_features = dataset.build_item_features([("book", ["paper"]), ("film", {"video": 1.0})])
    >>> item_features.shape
    (2, 4)
    """

    def __init__(self, user_identity_features=True, item_identity_features=True):
        self._user_identity_features = bool(user_identity_features)
        self._item_identity_features = bool(item_identity_features)
        self._reset()

    def _reset(self):
        self._users = _Side("user", self._user_identity_features)
        self._items = _Side("item", self._item_identity_features)

    def __repr__(self):
        return (
            f"Dataset(user_identity_features={self._user_identity_features}, "
            f"item_identity_features={self._item_identity_features}): "
            f"{len(self._users.ids)} users x {len(self._items.ids)} items, "
            f"{self._users.n_columns} user / {self._items.n_columns} item feature columns"
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, users, items, user_features=None, item_features=None):
        """Forget every mapping, then register the given ids and feature names.

        Parameters
        ----------
        users : iterable of hashable
            User ids; repeats are ignored. Row ``k`` of every matrix is the ``k``-th distinct id.
        items : iterable of hashable
            Item ids.
        user_features : iterable of hashable, optional
            Names of the user features (identity columns are added automatically).
        item_features : iterable of hashable, optional
            Names of the item features.

        Returns
        -------
        None
            The dataset is modified in place (as LightFM's).
        """
        saved = self._users, self._items
        self._reset()
        try:
            self.fit_partial(users, items, user_features, item_features)
        except BaseException:
            self._users, self._items = saved  # a rejected fit leaves the mappings it found
            raise

    def fit_partial(self, users=None, items=None, user_features=None, item_features=None):
        """Register more ids and feature names, keeping every existing index.

        New ids get the next rows (and, with identity features, the next feature columns); new
        feature names the next columns; ids and names already known are left where they are.

        Parameters
        ----------
        users : iterable of hashable, optional
        items : iterable of hashable, optional
        user_features : iterable of hashable, optional
        item_features : iterable of hashable, optional

        Returns
        -------
        None

        Raises
        ------
        TypeError
            If an argument is a string (not a collection of ids) or holds an unhashable value.
        ValueError
            If an id or name is NaN.
        """
        # Validate everything before changing anything, so a rejected call leaves no trace.
        arguments = {}
        for name, values in (("users", users), ("items", items), ("user_features", user_features),
                             ("item_features", item_features)):
            if values is not None:
                _check_collection(values, name)
                arguments[name] = list(values)
                kind = "user" if "user" in name else "item"
                what = f"{kind} id" if name in ("users", "items") else f"{kind} feature name"
                for value in arguments[name]:
                    _check_key(value, what)
        if "users" in arguments:
            self._users.add_ids(arguments["users"], "users")
        if "items" in arguments:
            self._items.add_ids(arguments["items"], "items")
        if "user_features" in arguments:
            self._users.add_features(arguments["user_features"], "user_features")
        if "item_features" in arguments:
            self._items.add_features(arguments["item_features"], "item_features")

    # ------------------------------------------------------------------ building
    def build_interactions(self, data):
        """Interaction and weight matrices from ``(user, item)`` or ``(user, item, weight)`` records.

        Parameters
        ----------
        data : iterable of tuples
            Each record is ``(user_id, item_id)`` (weight 1) or ``(user_id, item_id, weight)``; the
            two forms may be mixed. Weights must be finite real numbers.

        Returns
        -------
        interactions : scipy.sparse.coo_matrix of shape (n_users, n_items), int32
            1 for every (user, item) pair that occurs in ``data``.
        weights : scipy.sparse.coo_matrix of shape (n_users, n_items), float32
            The sum of the weights of the records of each pair; the same entries as
            ``interactions`` (usable as ``sample_weight``). Both are in canonical order (sorted by
            user, then item; no duplicates).

        Raises
        ------
        ValueError
            If a record has other than 2 or 3 fields, names an unknown user or item, or has a NaN
            or infinite weight.
        TypeError
            If a record is not a sequence or a weight is not a real number.
        """
        rows, cols, weights = [], [], []
        for position, record in enumerate(_check_collection(data, "data")):
            where = f"record {position}"
            if isinstance(record, (str, bytes, dict)) or not hasattr(record, "__len__"):
                raise TypeError(
                    f"{where} must be a (user_id, item_id) or (user_id, item_id, weight) tuple, "
                    f"got {type(record).__name__} {record!r}"
                )
            if len(record) == 2:
                user, item = record
                weight = 1.0
            elif len(record) == 3:
                user, item, weight = record
                weight = _check_weight(weight, f"{where} ({user!r}, {item!r})")
            else:
                raise ValueError(
                    f"{where} has {len(record)} fields; expected (user_id, item_id) or (user_id, item_id, weight)"
                )
            rows.append(self._users.row(user, where))
            cols.append(self._items.row(item, where))
            weights.append(weight)
        return self._interaction_matrices(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                                          np.asarray(weights, dtype=np.float64))

    def _interaction_matrices(self, rows, cols, weights):
        shape = self.interactions_shape()
        summed = sp.csr_matrix((weights, (rows, cols)), shape=shape)  # sums duplicates
        summed.sum_duplicates()
        weight_matrix = summed.tocoo()
        with np.errstate(over="ignore"):  # an overflow becomes inf, rejected just below
            data = weight_matrix.data.astype(np.float32)
        if not np.all(np.isfinite(data)):
            raise ValueError("summed interaction weights overflow float32")
        row = weight_matrix.row.astype(np.int32)
        col = weight_matrix.col.astype(np.int32)
        interactions = sp.coo_matrix((np.ones(row.shape[0], dtype=np.int32), (row, col)), shape=shape)
        weights_out = sp.coo_matrix((data, (row.copy(), col.copy())), shape=shape)
        return interactions, weights_out

    def build_user_features(self, data, normalize=True):
        """User feature matrix from ``(user_id, [feature, ...])`` or ``(user_id, {feature: weight})``.

        Parameters
        ----------
        data : iterable of pairs
            Features per user: a list (or any iterable, each name weight 1) or a dict of name to
            weight. A user may appear in several records (weights of a repeated feature add up);
            users that do not appear keep only their identity column.
        normalize : bool, default True
            Divide each row by the sum of its absolute weights (L1), identity column included.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_users, n_user_features), float32
            Identity columns (weight 1 before normalisation) when ``user_identity_features``,
            int32 ``indptr``/``indices``, sorted, no duplicates.

        Raises
        ------
        ValueError
            If a user id or feature name is unknown, a record does not have two fields, a weight is
            NaN or infinite, or ``normalize`` is True and a row is empty (no identity column and no
            features).
        TypeError
            If the features of a record are neither a list-like of names nor a dict.
        """
        return self._users.build_features(data, normalize)

    def build_item_features(self, data, normalize=True):
        """Item feature matrix from ``(item_id, [feature, ...])`` or ``(item_id, {feature: weight})``.

        Parameters
        ----------
        data : iterable of pairs
            As in :meth:`build_user_features`, for items.
        normalize : bool, default True
            L1-normalise each row.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_items, n_item_features), float32

        Raises
        ------
        ValueError, TypeError
            As in :meth:`build_user_features`.
        """
        return self._items.build_features(data, normalize)

    # ------------------------------------------------------------------ pandas
    @classmethod
    def from_frame(cls, df, user_col, item_col, user_features=None, item_features=None,
                   user_identity_features=True, item_identity_features=True):
        """A dataset fitted on the distinct users and items of a pandas DataFrame.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per interaction.
        user_col, item_col : hashable
            Column names of the user and item ids. Rows follow the order of first appearance.
        user_features, item_features : iterable of hashable, optional
            Feature names to register (as in :meth:`fit`).
        user_identity_features, item_identity_features : bool, default True

        Returns
        -------
        Dataset

        Raises
        ------
        ImportError
            If pandas is not installed.
        TypeError
            If ``df`` is not a DataFrame.
        ValueError
            If a column is missing or holds missing values.
        """
        pd = _import_pandas("Dataset.from_frame")
        users = _frame_column(pd, df, user_col, "user_col")
        items = _frame_column(pd, df, item_col, "item_col")
        dataset = cls(user_identity_features=user_identity_features, item_identity_features=item_identity_features)
        dataset.fit(pd.unique(users), pd.unique(items), user_features, item_features)
        return dataset

    def build_interactions_from_frame(self, df, user_col, item_col, weight_col=None):
        """:meth:`build_interactions` from the columns of a pandas DataFrame (vectorised).

        Parameters
        ----------
        df : pandas.DataFrame
        user_col, item_col : hashable
            Columns of known user and item ids.
        weight_col : hashable, optional
            Column of finite numeric weights; None gives every row weight 1.

        Returns
        -------
        interactions : scipy.sparse.coo_matrix of shape (n_users, n_items), int32
        weights : scipy.sparse.coo_matrix of shape (n_users, n_items), float32

        Raises
        ------
        ImportError
            If pandas is not installed.
        TypeError
            If ``df`` is not a pandas DataFrame or the weight column is not numeric.
        ValueError
            If a column is missing or has missing values, an id is unknown, or a weight is not
            finite.
        """
        pd = _import_pandas("Dataset.build_interactions_from_frame")
        users = _frame_column(pd, df, user_col, "user_col")
        items = _frame_column(pd, df, item_col, "item_col")
        rows = self._frame_codes(users, self._users, user_col)
        cols = self._frame_codes(items, self._items, item_col)
        if weight_col is None:
            weights = np.ones(rows.shape[0], dtype=np.float64)
        else:
            column = _frame_column(pd, df, weight_col, "weight_col")
            if not (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
                    and not pd.api.types.is_complex_dtype(column)):
                raise TypeError(f"weight column {weight_col!r} must be numeric, got dtype {column.dtype}")
            weights = column.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(weights)
            if bad.any():
                raise ValueError(
                    f"weight column {weight_col!r} has a non-finite value {weights[bad][0]} "
                    f"(row {df.index[np.flatnonzero(bad)[0]]!r})"
                )
        return self._interaction_matrices(rows, cols, weights)

    @staticmethod
    def _frame_codes(column, side, name):
        import pandas as pd

        # Rows are the ids' positions in side.ids (insertion order). An object index looks the
        # column up in C with the dict's own equality (1 == 1.0, "1" != 1); Series.map(dict)
        # spent 4.1 s of 4M rows casting its results element by element (0.8 s this way).
        known = pd.Index(list(side.ids), dtype=object)
        codes = known.get_indexer(pd.Index(column.to_numpy(dtype=object), dtype=object))
        unknown = codes < 0
        if unknown.any():
            first = column.to_numpy()[np.flatnonzero(unknown)[0]]
            raise ValueError(
                f"{side.kind} id {_plain(first)!r} in column {name!r} is not in the dataset "
                f"({int(unknown.sum())} unknown rows); add it with fit or fit_partial first"
            )
        return codes.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ introspection
    def mapping(self):
        """The four index maps, as LightFM returns them.

        Returns
        -------
        user_id_map : dict of hashable to int
            User id to row.
        user_feature_map : dict of hashable to int
            Feature to column: identity columns keyed by the user id, named features by their
            name (an identity column whose id is also a feature name is keyed by
            :class:`IdentityFeature`). Has one entry per column.
        item_id_map : dict of hashable to int
        item_feature_map : dict of hashable to int
        """
        return (dict(self._users.ids), self._users.feature_map(), dict(self._items.ids), self._items.feature_map())

    def interactions_shape(self):
        """Shape of the interaction matrices.

        Returns
        -------
        tuple of (int, int)
            ``(n_users, n_items)``.
        """
        return len(self._users.ids), len(self._items.ids)

    def user_features_shape(self):
        """Shape of :meth:`build_user_features`'s matrix.

        Returns
        -------
        tuple of (int, int)
            ``(n_users, n_user_features)``, identity columns included.
        """
        return len(self._users.ids), self._users.n_columns

    def item_features_shape(self):
        """Shape of :meth:`build_item_features`'s matrix.

        Returns
        -------
        tuple of (int, int)
            ``(n_items, n_item_features)``.
        """
        return len(self._items.ids), self._items.n_columns

    def model_dimensions(self):
        """Numbers of user and item feature embeddings a model trained on this dataset has.

        Returns
        -------
        tuple of (int, int)
            ``(n_user_features, n_item_features)``.
        """
        return self._users.n_columns, self._items.n_columns


def _import_pandas(what):
    try:
        import pandas
    except ImportError:
        raise ImportError(
            f"{what} needs pandas, which is not installed; install it with `pip install pandas`"
        ) from None
    return pandas


def _frame_column(pd, df, column, argument):
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if column not in df.columns:
        raise ValueError(f"{argument}={column!r} is not a column of df (columns: {list(df.columns)})")
    series = df[column]
    if isinstance(series, pd.DataFrame):
        raise ValueError(f"{argument}={column!r} names more than one column of df")
    missing = series.isna().to_numpy()
    if missing.any():
        first = df.index[np.flatnonzero(missing)[0]]
        raise ValueError(f"column {column!r} has {int(missing.sum())} missing values (first at row {first!r})")
    return series

