"""The ``fastrank`` command (also ``python -m fastrank``).

Subcommands:

- ``fastrank demo``: train every loss on built-in synthetic telecom data (see :mod:`fastrank.demo`);
- ``fastrank train``: fit a model on interaction (and optional feature) files, save it with its id
  and feature mappings;
- ``fastrank recommend``: top-k items with scores for users of a saved model;
- ``fastrank evaluate``: ranking metrics of a saved model on a test file.

Input files are CSV (UTF-8, a header line, comma-separated; ``.tsv`` is tab-separated) or Parquet
(``.parquet``/``.pq``, read with pandas and pyarrow). Interactions have the columns
``user_id,item_id[,weight]``, feature files ``id,feature[,weight]``; ids and feature names are read
as strings (``007`` and ``7`` are different ids) with surrounding spaces removed. Interaction
weights count by their ratios: ``train`` divides them by their mean.

Bad input (a missing or unreadable file, a wrong or missing column, an empty file, a non-finite
weight, an unknown id) is reported in one line on stderr with exit code 2.
"""

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fastrank._console import format_table, progress
from fastrank._validation import to_csr

INTERACTION_COLUMNS = ("user_id", "item_id")
FEATURE_COLUMNS = ("id", "feature")
WEIGHT_COLUMN = "weight"
PARQUET_SUFFIXES = (".parquet", ".pq")
CLI_FORMAT = "fastrank-cli-1"
# logistic needs explicit negatives (values <= 0), which a file of interactions cannot give:
# trained on positives alone it ranked below popularity (ml-latest-small), so the CLI leaves it out
LOSS_NAMES = ("warp", "bpr", "warp-kos")


class CommandError(ValueError):
    """A problem with the user's input, reported in one line with exit code 2."""


# ---------------------------------------------------------------------------- reading tables

@dataclass
class Table:
    """The columns of an input file, as read.

    Attributes
    ----------
    path : str
        The file.
    keys : tuple of list of str
        The id (or feature name) columns, in the order asked for, one string per record.
    weights : float64 array of shape (n_records,) or None
        The weight column, None when the file has none.
    locations : list of str
        Where each record is, for messages: ``"line 7"`` (CSV) or ``"row 6"`` (Parquet).
    """

    path: str
    keys: tuple
    weights: object
    locations: list

    def __len__(self):
        return len(self.locations)


def read_table(path, columns, what):
    """Read a CSV or Parquet file with the given key columns and an optional ``weight`` column.

    Parameters
    ----------
    path : str
        A ``.parquet``/``.pq`` file, else CSV (``.tsv``: tab-separated).
    columns : tuple of str
        Required columns, read as strings; ``weight`` is the only other column allowed.
    what : str
        What the file holds (``"interactions"``, ``"user features"``), for messages.

    Returns
    -------
    Table

    Raises
    ------
    CommandError
        If the file is missing, unreadable, empty, has a missing or unexpected column, an empty
        id, or a weight that is not a finite number.
    """
    if not os.path.exists(path):
        raise CommandError(f"{what} file {path!r} does not exist")
    if os.path.isdir(path):
        raise CommandError(f"{what} file {path!r} is a directory")
    if path.lower().endswith(PARQUET_SUFFIXES):
        header, keys, weights, locations = _read_parquet(path, columns, what)
    else:
        header, keys, weights, locations = _read_csv(path, columns, what)
    if not locations:
        raise CommandError(f"{what} file {path!r} has a header but no records")
    for name, values in zip(columns, keys):
        for value, location in zip(values, locations):
            if not value:
                raise CommandError(f"{path}, {location}: empty {name}")
    if weights is not None:
        weights = _check_weights(weights, path, locations, what)
    return Table(path, tuple(keys), weights, locations)


def _check_header(header, columns, path, what):
    """Positions of ``columns`` and of the optional weight column in ``header``."""
    expected = ",".join(columns) + f"[,{WEIGHT_COLUMN}]"
    for position, name in enumerate(header):
        if name in header[:position]:
            raise CommandError(f"{what} file {path!r} has the column {name!r} twice; expected {expected}")
        if name not in columns and name != WEIGHT_COLUMN:
            hint = ""
            if any(separator in name for separator in ("\t", ";", "|")):
                hint = " (fields are separated by commas; a tab-separated file needs the .tsv extension)"
            raise CommandError(f"{what} file {path!r} has an unexpected column {name!r}; expected {expected}"
                               f"{hint}")
    for name in columns:
        if name not in header:
            found = ",".join(header)
            raise CommandError(f"{what} file {path!r} has no column {name!r} (found {found}); expected {expected}")
    weight = header.index(WEIGHT_COLUMN) if WEIGHT_COLUMN in header else None
    return [header.index(name) for name in columns], weight


def _read_csv(path, columns, what):
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream, delimiter=delimiter)
            try:
                header = [name.strip() for name in next(reader)]
            except StopIteration:
                raise CommandError(f"{what} file {path!r} is empty; expected a header line "
                                   f"{','.join(columns)}[,{WEIGHT_COLUMN}]") from None
            positions, weight = _check_header(header, columns, path, what)
            keys = [[] for _ in columns]
            weights = [] if weight is not None else None
            locations = []
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank line
                location = f"line {reader.line_num}"
                if len(record) != len(header):
                    raise CommandError(f"{path}, {location}: {len(record)} fields, expected {len(header)} "
                                       f"({','.join(header)})")
                for values, position in zip(keys, positions):
                    value = record[position].strip()
                    if "\n" in value or "\r" in value:
                        # a quote left open swallows the lines after it into one field
                        raise CommandError(f"{path}, {location}: a field holds a line break (a quote left "
                                           f"unclosed?): {value[:40]!r}...")
                    values.append(value)
                if weights is not None:
                    weights.append(record[weight].strip())
                locations.append(location)
    except UnicodeDecodeError as error:
        raise CommandError(f"{what} file {path!r} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                           f"at offset {error.start})") from None
    except csv.Error as error:
        raise CommandError(f"{what} file {path!r} is not valid CSV: {error}") from None
    except OSError as error:
        raise CommandError(f"cannot read {what} file {path!r}: {error.strerror or error}") from None
    return header, keys, weights, locations


def _read_parquet(path, columns, what):
    try:
        import pandas
        import pyarrow  # noqa: F401 - pandas' Parquet engine
    except ImportError:
        raise CommandError(f"reading the Parquet file {path!r} needs pandas and pyarrow: "
                           f"pip install pandas pyarrow") from None
    try:
        frame = pandas.read_parquet(path)
    except OSError as error:
        raise CommandError(f"cannot read {what} file {path!r}: {error.strerror or error}") from None
    except Exception as error:  # pyarrow raises its own error types for a file that is not Parquet
        message = " ".join(str(error).split())
        raise CommandError(f"{what} file {path!r} is not a readable Parquet file: {message}") from None
    header = [str(name) for name in frame.columns]
    positions, weight = _check_header(header, columns, path, what)
    locations = [f"row {row + 1}" for row in range(len(frame))]
    keys = []
    for name, position in zip(columns, positions):
        column = frame.iloc[:, position]
        missing = column.isna().to_numpy()
        if missing.any():
            raise CommandError(f"{path}, {locations[int(np.flatnonzero(missing)[0])]}: missing {name}")
        keys.append([str(value).strip() for value in column.tolist()])
    weights = None
    if weight is not None:
        column = frame.iloc[:, weight]
        if not pandas.api.types.is_numeric_dtype(column) or pandas.api.types.is_bool_dtype(column):
            raise CommandError(f"{what} file {path!r}: column {WEIGHT_COLUMN!r} has dtype {column.dtype}, "
                               f"expected numbers")
        weights = column.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
    return header, keys, weights, locations


def _check_weights(values, path, locations, what):
    """Weights as float64, every one finite (and, for interactions, non-negative)."""
    weights = np.empty(len(values), dtype=np.float64)
    for position, (value, location) in enumerate(zip(values, locations)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise CommandError(f"{path}, {location}: weight {value!r} is not a number") from None
        if not math.isfinite(number):
            raise CommandError(f"{path}, {location}: weight {value!r} is not a finite number")
        if number < 0 and what == "interactions":
            raise CommandError(f"{path}, {location}: weight {value!r} is negative; interaction weights must be >= 0")
        weights[position] = number
    return weights


def _feature_records(table):
    """``(id, {feature: weight})`` per id of a features table, weights of repeated pairs summed."""
    records = {}
    weights = table.weights if table.weights is not None else np.ones(len(table))
    for key, feature, weight in zip(*table.keys, weights):
        row = records.setdefault(key, {})
        row[feature] = row.get(feature, 0.0) + float(weight)
    return list(records.items())


def _unique(*sequences):
    """Distinct values of the sequences, in order of first appearance."""
    return list(dict.fromkeys(value for sequence in sequences for value in sequence))


# ---------------------------------------------------------------------------- train

def build_training_data(interactions, user_features=None, item_features=None):
    """Matrices and mappings for :class:`fastrank.FastRank` from the tables of ``fastrank train``.

    Users and items are those of the interactions, then those only in a features file (known by
    their features alone: they can be recommended to and recommended). Every user and item has
    an identity feature besides its named features; rows are L1-normalised.

    Parameters
    ----------
    interactions : Table
        ``user_id``, ``item_id`` and optional weights.
    user_features, item_features : Table, optional
        ``id``, ``feature`` and optional weights.

    Returns
    -------
    dataset : fastrank.data.Dataset
    interactions : scipy.sparse.coo_matrix of shape (n_users, n_items), int32
    weights : scipy.sparse.coo_matrix of shape (n_users, n_items), float32, or None
        Summed weights when the interactions file has a weight column.
    user_features, item_features : scipy.sparse.csr_matrix, float32
    """
    from fastrank.data import Dataset

    users, items = interactions.keys
    dataset = Dataset()
    dataset.fit(
        _unique(users, user_features.keys[0] if user_features else ()),
        _unique(items, item_features.keys[0] if item_features else ()),
        user_features=_unique(user_features.keys[1]) if user_features else None,
        item_features=_unique(item_features.keys[1]) if item_features else None,
    )
    if interactions.weights is None:
        matrix, weights = dataset.build_interactions(zip(users, items))
        weights = None
    else:
        matrix, weights = dataset.build_interactions(zip(users, items, interactions.weights))
    user_matrix = dataset.build_user_features(_feature_records(user_features) if user_features else [])
    item_matrix = dataset.build_item_features(_feature_records(item_features) if item_features else [])
    return dataset, matrix, weights, user_matrix, item_matrix


def model_extra(dataset, interactions, user_features, item_features):
    """The arrays ``fastrank train`` stores beside the model (``FastRank.save(extra=...)``).

    Returns
    -------
    dict of str to numpy array
        ``cli_format``; ``user_ids`` and ``item_ids`` (str, by row); ``user_feature_names`` and
        ``user_feature_columns`` (the named features and their columns; items likewise); the
        feature matrices as CSR arrays ``{user,item}_features_{indptr,indices,data,shape}``; and
        the training interactions as ``train_{indptr,indices,shape}``.
    """
    user_ids, user_feature_map, item_ids, item_feature_map = dataset.mapping()
    extra = {"cli_format": np.array(CLI_FORMAT)}
    for side, ids, feature_map, features in (("user", user_ids, user_feature_map, user_features),
                                             ("item", item_ids, item_feature_map, item_features)):
        extra[f"{side}_ids"] = _string_array(ids)
        named = _named_features(ids, feature_map)
        extra[f"{side}_feature_names"] = _string_array(named)
        extra[f"{side}_feature_columns"] = np.array(list(named.values()), dtype=np.int64)
        extra.update(_csr_arrays(f"{side}_features", features, with_data=True))
    extra.update(_csr_arrays("train", sp.csr_matrix(interactions), with_data=False))
    return extra


def _named_features(ids, feature_map):
    """The named (non-identity) entries of a ``Dataset`` feature map: name -> column."""
    from fastrank.data import IdentityFeature

    identity = {feature_map.get(IdentityFeature(key), feature_map.get(key)) for key in ids}
    return {name: column for name, column in feature_map.items() if column not in identity}


def _string_array(values):
    values = [str(value) for value in values]
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def _csr_arrays(prefix, matrix, with_data):
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    arrays = {f"{prefix}_indptr": matrix.indptr.astype(np.int64), f"{prefix}_indices": matrix.indices.astype(np.int32),
              f"{prefix}_shape": np.array(matrix.shape, dtype=np.int64)}
    if with_data:
        arrays[f"{prefix}_data"] = matrix.data.astype(np.float32)
    return arrays


def run_train(args):
    """``fastrank train``: fit a model on files and save it with its mappings.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options of the ``train`` subcommand.

    Returns
    -------
    int
        0 on success.
    """
    from fastrank import FastRank

    _check_output_directory(args.output)
    interactions = read_table(args.interactions, INTERACTION_COLUMNS, "interactions")
    user_table = read_table(args.user_features, FEATURE_COLUMNS, "user features") if args.user_features else None
    item_table = read_table(args.item_features, FEATURE_COLUMNS, "item features") if args.item_features else None
    if args.loss == "warp-kos" and interactions.weights is not None:
        raise CommandError(f"--loss warp-kos cannot use weights, and {args.interactions!r} has a "
                           f"{WEIGHT_COLUMN!r} column; drop it or choose another loss")
    dataset, matrix, weights, user_features, item_features = build_training_data(interactions, user_table, item_table)
    n_users, n_items = matrix.shape
    pairs = f" ({matrix.nnz} distinct pairs)" if matrix.nnz != len(interactions) else ""
    _status(args, f"{len(interactions)} interactions{pairs}: {n_users} users x {n_items} items, "
                  f"{user_features.shape[1]} user / {item_features.shape[1]} item feature columns")
    only_in_features = _ids_only_in_features(interactions, user_table, item_table)
    if only_in_features:
        _status(args, f"known only from a feature file (cold start): {only_in_features}")
    if weights is not None:
        weights = _relative_weights(weights)
    model = FastRank(no_components=args.components, loss=args.loss, random_state=args.seed)
    fit_arguments = dict(user_features=user_features, item_features=item_features, sample_weight=weights,
                         epochs=1, num_threads=args.threads)
    for epoch in progress(range(args.epochs), args.epochs, f"training {args.loss}", enabled=not args.quiet):
        (model.fit if epoch == 0 else model.fit_partial)(matrix, **fit_arguments)
    model.save(args.output, extra=model_extra(dataset, matrix, user_features, item_features))
    _status(args, f"model saved to {args.output}")
    return 0


def _relative_weights(weights):
    """The interaction weights divided by their mean: only their ratios carry meaning here.

    A weight multiplies its example's gradient, and adagrad's first steps on a row grow with
    it: play counts in the hundreds made BPR diverge (ml-latest-small, weights x25: p@10 0.001
    against 0.145), so the CLI scales them to a mean of 1 (the Python API leaves sample_weight
    as given, as LightFM does)."""
    mean = float(weights.data.mean()) if weights.nnz else 0.0
    if mean > 0:
        weights = weights.copy()
        weights.data = (weights.data / mean).astype(np.float32)
    return weights


def _ids_only_in_features(interactions, user_table, item_table):
    """How many users and items appear in a feature file but in no interaction, as text ('' if none)."""
    counts = []
    for kind, ids, table in (("users", interactions.keys[0], user_table), ("items", interactions.keys[1], item_table)):
        if table is not None:
            extra = len(set(table.keys[0]) - set(ids))
            if extra:
                counts.append(f"{extra} {kind}")
    return " and ".join(counts)


def _check_output_directory(path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise CommandError(f"cannot write {path!r}: it is a directory")


def _status(args, message):
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- saved models

@dataclass
class SavedModel:
    """A model written by ``fastrank train`` and the mappings stored with it.

    Attributes
    ----------
    model : FastRank
    user_ids, item_ids : numpy str arrays of shape (n_users,) and (n_items,)
        The original id of each row.
    user_index, item_index : dict of str to int
        Id to row.
    user_features, item_features : scipy.sparse.csr_matrix, float32
    train : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The training interactions (pattern).
    """

    model: object
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_index: dict
    item_index: dict
    user_features: sp.csr_matrix
    item_features: sp.csr_matrix
    train: sp.csr_matrix


def load_saved_model(path):
    """Load a model written by ``fastrank train``.

    Raises
    ------
    CommandError
        If the file is missing or was not written by ``fastrank train``.
    ValueError
        If it is not a readable fastrank model file.
    """
    from fastrank import FastRank

    if not os.path.isfile(path):
        raise CommandError(f"model file {path!r} does not exist" if not os.path.exists(path)
                           else f"model file {path!r} is not a file")
    model = FastRank.load(path)
    extra = FastRank.load_extra(path)
    if "cli_format" not in extra:
        raise CommandError(f"model file {path!r} has no id mappings: it was not written by `fastrank train`")
    if str(extra["cli_format"]) != CLI_FORMAT:
        raise CommandError(f"model file {path!r} has mappings in format {str(extra['cli_format'])!r}; "
                           f"this fastrank reads {CLI_FORMAT!r}")
    try:
        user_ids, item_ids = extra["user_ids"], extra["item_ids"]
        matrices = {prefix: _csr_from(extra, prefix) for prefix in ("user_features", "item_features", "train")}
    except KeyError as error:
        raise CommandError(f"model file {path!r} lacks the stored array {error.args[0]!r} (edited?)") from None
    # the mappings must fit the model and each other, or lookups would index past them
    n_users, n_items = model._n_users, model._n_items
    expected = {"user_features": (n_users, model.user_embeddings.shape[0]),
                "item_features": (n_items, model.item_embeddings.shape[0]), "train": (n_users, n_items)}
    if user_ids.shape != (n_users,) or item_ids.shape != (n_items,) or any(
            matrices[prefix].shape != shape for prefix, shape in expected.items()):
        raise CommandError(f"model file {path!r} has id mappings that do not match its model (edited?)")
    return SavedModel(
        model=model,
        user_ids=user_ids,
        item_ids=item_ids,
        user_index={key: row for row, key in enumerate(user_ids.tolist())},
        item_index={key: row for row, key in enumerate(item_ids.tolist())},
        user_features=matrices["user_features"],
        item_features=matrices["item_features"],
        train=matrices["train"],
    )


def _csr_from(extra, prefix):
    """The CSR matrix stored as ``<prefix>_*`` arrays by :func:`_csr_arrays`, its structure checked."""
    indices = extra[f"{prefix}_indices"]
    data = extra.get(f"{prefix}_data", np.ones(indices.shape[0], dtype=np.float32))
    shape = tuple(int(size) for size in np.ravel(extra[f"{prefix}_shape"]))
    if len(shape) != 2:
        raise CommandError(f"the stored {prefix} has shape {shape}, not a matrix's")
    matrix = sp.csr_matrix((data, indices, extra[f"{prefix}_indptr"]), shape=shape)
    return to_csr(matrix, f"the stored {prefix}", allow_empty=True)


# ---------------------------------------------------------------------------- recommend

def run_recommend(args):
    """``fastrank recommend``: print the top-k items with scores for each ``--user``.

    Returns
    -------
    int
        0 on success.
    """
    saved = load_saved_model(args.model)
    args.user = [user.strip() for user in args.user]  # as ids read from files are
    rows = []
    for user in args.user:
        if user not in saved.user_index:
            raise CommandError(f"unknown user id {user!r}: not among the {len(saved.user_ids)} users of {args.model}")
        rows.append(saved.user_index[user])
    # padding is not printed, so asking for more items than the model has is asking for all
    items, scores = saved.model.recommend(
        np.array(rows, dtype=np.int64), k=min(args.k, len(saved.item_ids)), user_features=saved.user_features,
        item_features=saved.item_features, filter_interactions=saved.train if args.exclude_seen else None,
        num_threads=args.threads,
    )
    table = []
    for user, user_items, user_scores in zip(args.user, items, scores):
        for rank, (item, score) in enumerate(zip(user_items, user_scores), start=1):
            if item >= 0:  # -1 pads when fewer than k items are left
                table.append([user, str(rank), str(saved.item_ids[item]), f"{score:.4f}"])
    print(format_table(["user_id", "rank", "item_id", "score"], table, "<><>"))
    return 0


# ---------------------------------------------------------------------------- evaluate

def held_out_matrix(table, saved):
    """The test interactions of ``table`` as a matrix over the model's users and items.

    Rows whose user or item the model does not know, and rows that are training interactions of
    the model, are skipped and reported on stderr.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_users, n_items), float32
        1 for every remaining (user, item) pair.

    Raises
    ------
    CommandError
        If no row is left.
    """
    users, items = table.keys
    rows = np.array([saved.user_index.get(user, -1) for user in users], dtype=np.int64)
    cols = np.array([saved.item_index.get(item, -1) for item in items], dtype=np.int64)
    known = (rows >= 0) & (cols >= 0)
    if not known.all():
        first = int(np.flatnonzero(~known)[0])
        what = f"user id {users[first]!r}" if rows[first] < 0 else f"item id {items[first]!r}"
        print(f"fastrank evaluate: skipped {int((~known).sum())} of {_count(len(table), 'test row')} with ids "
              f"the model does not know (first: {what}, {table.locations[first]})", file=sys.stderr)
    seen = np.zeros(len(table), dtype=bool)
    if known.any():
        seen[known] = np.asarray(saved.train[rows[known], cols[known]]).ravel() != 0
    if seen.any():
        first = int(np.flatnonzero(seen)[0])
        print(f"fastrank evaluate: skipped {_count(int(seen.sum()), 'test row')} found in the training interactions "
              f"(first: {users[first]!r}, {items[first]!r}, {table.locations[first]})", file=sys.stderr)
    keep = known & ~seen
    if not keep.any():
        raise CommandError(f"no test rows of {table.path!r} are left to evaluate: every row has an unknown id "
                           f"or is a training interaction")
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
                           shape=saved.train.shape)
    matrix.data[:] = 1.0  # duplicates count once
    return matrix


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


METRICS = (("precision", "precision@{k}"), ("recall", "recall@{k}"), ("ndcg", "NDCG@{k}"), ("map", "MAP@{k}"),
           ("hit_rate", "hit rate@{k}"), ("auc", "AUC"))


def run_evaluate(args):
    """``fastrank evaluate``: print ranking metrics of a saved model on a test file.

    Returns
    -------
    int
        0 on success.
    """
    from fastrank.evaluation import ranking_metrics

    saved = load_saved_model(args.model)
    test = held_out_matrix(read_table(args.test, INTERACTION_COLUMNS, "test"), saved)
    metrics = ranking_metrics(saved.model, test, saved.train, k=args.k, user_features=saved.user_features,
                              item_features=saved.item_features, num_threads=args.threads)
    n_users = metrics["auc"].shape[0]
    print(f"{test.nnz} test interactions of {n_users} users; the model's training interactions are not "
          f"candidates; means over users:")
    rows = [[label.format(k=args.k), f"{float(metrics[name].mean()):.4f}"] for name, label in METRICS]
    print(format_table(["metric", "value"], rows, "<>"))
    return 0


# ---------------------------------------------------------------------------- demo

def run_demo_command(args):
    """``fastrank demo``: see :func:`fastrank.demo.run_demo`."""
    from fastrank.demo import run_demo

    return run_demo(output=args.output, epochs=args.epochs, threads=args.threads, seed=args.seed,
                    quick=args.quick, n_customers=args.n_customers, n_plans=args.n_plans)


# ---------------------------------------------------------------------------- parser

def _int_at_least(minimum):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_demo_parser(commands):
    demo = commands.add_parser(
        "demo", help="train every loss on built-in telecom data, compare with popularity, recommend",
        description="Train WARP, BPR, WARP-KOS and logistic models on synthetic telecom plan data, print their "
                    "test metrics beside a popularity baseline, recommend plans to two known customers and one "
                    "brand-new customer, and plot test precision@5 per epoch.")
    demo.add_argument("--output", default="demo_output", metavar="DIR",
                      help="directory for the precision-per-epoch PNG and CSV (default: demo_output)")
    demo.add_argument("--epochs", type=_positive_int, default=None, help="epochs per loss (default: 20)")
    demo.add_argument("--threads", type=_positive_int, default=1,
                      help="threads (default: 1, which makes the printout reproducible)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the data and the models")
    demo.add_argument("--quick", action="store_true", help="tiny data and 3 epochs: a smoke test")
    demo.add_argument("--n-customers", type=_positive_int, default=None, help=argparse.SUPPRESS)
    demo.add_argument("--n-plans", type=_positive_int, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(handler=run_demo_command)


def _add_train_parser(commands):
    train = commands.add_parser(
        "train", help="fit a model on CSV/Parquet files and save it with its id mappings",
        description="Fit a model on an interactions file (columns user_id,item_id[,weight]) and optional "
                    "feature files (columns id,feature[,weight]), CSV or Parquet. Ids are read as strings. Every "
                    "user and item gets an identity feature besides its named features; users and items found "
                    "only in a feature file are known by their features (cold start). The model is saved with "
                    "its id and feature mappings and training interactions, for `fastrank recommend` and "
                    "`fastrank evaluate`.")
    train.add_argument("--interactions", required=True, metavar="FILE",
                       help="user_id,item_id[,weight] (CSV or Parquet)")
    train.add_argument("--user-features", metavar="FILE", help="id,feature[,weight] of users")
    train.add_argument("--item-features", metavar="FILE", help="id,feature[,weight] of items")
    train.add_argument("--loss", choices=LOSS_NAMES, default="warp",
                       help="training loss (default: warp; logistic, which needs explicit negatives, is in the "
                            "Python API)")
    train.add_argument("--epochs", type=_positive_int, default=20, help="training epochs (default: 20)")
    train.add_argument("--components", type=_positive_int, default=64, help="embedding dimension (default: 64)")
    train.add_argument("--threads", type=_positive_int, default=1,
                       help="training threads (default: 1, bit-reproducible with --seed; more is faster and "
                            "reproducible only for models that train in strata: docs/performance.md)")
    train.add_argument("--seed", type=_non_negative_int, default=None, help="random seed (default: none)")
    train.add_argument("--output", required=True, metavar="MODEL.npz", help="where to save the model")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    train.set_defaults(handler=run_train)


def _add_recommend_parser(commands):
    recommend = commands.add_parser(
        "recommend", help="print the top-k items with scores for users of a saved model",
        description="Print the top-k items (original ids) and scores for each --user of a model saved by "
                    "`fastrank train`, best first.")
    recommend.add_argument("--model", required=True, metavar="MODEL.npz", help="a model saved by `fastrank train`")
    recommend.add_argument("--user", required=True, action="extend", nargs="+", metavar="ID",
                           help="user id (repeat the option or give several)")
    recommend.add_argument("-k", type=_positive_int, default=10, help="items per user (default: 10)")
    recommend.add_argument("--exclude-seen", action="store_true", help="leave out the user's training items")
    recommend.add_argument("--threads", type=_positive_int, default=1, help="threads (default: 1)")
    recommend.set_defaults(handler=run_recommend)


def _add_evaluate_parser(commands):
    evaluate = commands.add_parser(
        "evaluate", help="print ranking metrics of a saved model on a test file",
        description="Print precision@k, recall@k, NDCG@k, MAP@k, hit rate@k and AUC (means over the users with "
                    "test interactions) of a model saved by `fastrank train` on a test file with columns "
                    "user_id,item_id[,weight] (weights are ignored). The model's training interactions are not "
                    "candidates. Test rows with a user or item the model does not know, and rows that are "
                    "training interactions, are skipped and counted on stderr.")
    evaluate.add_argument("--model", required=True, metavar="MODEL.npz", help="a model saved by `fastrank train`")
    evaluate.add_argument("--test", required=True, metavar="FILE", help="user_id,item_id[,weight] (CSV or Parquet)")
    evaluate.add_argument("-k", type=_positive_int, default=10, help="cut-off of the @k metrics (default: 10)")
    evaluate.add_argument("--threads", type=_positive_int, default=1, help="threads (default: 1)")
    evaluate.set_defaults(handler=run_evaluate)


def build_parser():
    """The argument parser of the ``fastrank`` command and its subcommands."""
    from fastrank._version import __version__

    parser = argparse.ArgumentParser(
        prog="fastrank", description="Fast hybrid recommender (LightFM-compatible): demo, train, recommend, evaluate.")
    parser.add_argument("--version", action="version", version=f"fastrank {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo_parser(commands)
    _add_train_parser(commands)
    _add_recommend_parser(commands)
    _add_evaluate_parser(commands)
    return parser


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None):
    """Run the ``fastrank`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for bad input (reported in one line on stderr), also
        for a model too large for memory. Usage errors exit through argparse (status 2).
    """
    args = build_parser().parse_args(argv)
    stderr = sys.stderr
    sys.stderr = _ReportStream(stderr)  # progress and messages: a closed pipe must not stop the work
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, MemoryError) as error:  # (MemoryError: e.g. --components 10**9)
        print(f"fastrank {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastrank {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stderr = stderr


class _ReportStream:
    """``sys.stderr`` that goes quiet once its reader has gone: `fastrank train ... 2>&1 | head -1`
    stopped training at the next progress line (BrokenPipeError), and the model was never saved."""

    def __init__(self, stream):
        self._stream = stream
        self._closed = False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._went_away()
        return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went_away()

    def _went_away(self):
        self._closed = True
        try:  # the interpreter flushes stderr at exit too: point it at nothing
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):  # isatty, fileno, encoding... as the stream's
        return getattr(self._stream, name)


if __name__ == "__main__":
    sys.exit(main())
