"""The ``fastrank demo``: telecom plan recommendations on synthetic data.

:func:`make_telecom_catalogue` dresses the output of :func:`fastrank.datasets.make_hybrid` as a
mobile operator's catalogue: customers described by segment, usage and device, plans by type,
price tier and data tier. :func:`run_demo` trains every loss on it, compares them with a
popularity baseline, recommends plans to known and brand-new customers, and plots test
precision per epoch.

The generator gives every customer one *profile* (a segment, usage, device combination) and every
plan one profile (type, price tier, data tier); ``make_hybrid`` draws a random latent taste per
profile, so what a customer likes depends on the whole combination, not on each attribute alone.
The feature matrices therefore hold, per row, an identity column, the three attributes and the
profile (their cross), L1-normalised: ``segment=student``, ``usage=heavy``, ``device=android`` and
``profile=student/heavy/android``.
"""

import os
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fastrank._console import format_table, progress

__all__ = ["TelecomCatalogue", "make_telecom_catalogue", "popularity_model", "run_demo"]

SEGMENTS = ("student", "family", "professional", "senior")
USAGE_LEVELS = ("light", "moderate", "heavy")
DEVICES = ("android", "ios", "feature phone")
PLAN_TYPES = ("prepaid", "postpaid", "family", "business")
PRICE_TIERS = ("budget", "standard", "premium")
DATA_TIERS = ("5GB", "20GB", "unlimited")

CUSTOMER_ATTRIBUTES = {"segment": SEGMENTS, "usage": USAGE_LEVELS, "device": DEVICES}
PLAN_ATTRIBUTES = {"type": PLAN_TYPES, "price": PRICE_TIERS, "data": DATA_TIERS}
_PLAN_SUFFIXES = ("Go", "Plus", "Max", "Flex", "Smart", "One", "Lite", "Pro")

LOSSES = ("warp", "bpr", "warp-kos", "logistic")
K = 5
NEW_CUSTOMER = {"segment": "student", "usage": "heavy", "device": "android"}

# Full run and the --quick smoke run (seconds on one core).
FULL_SIZE = {"n_customers": 5000, "n_plans": 200, "epochs": 20, "no_components": 32}
QUICK_SIZE = {"n_customers": 300, "n_plans": 40, "epochs": 3, "no_components": 8}


@dataclass
class TelecomCatalogue:
    """Synthetic telecom interactions with named customer and plan features.

    Attributes
    ----------
    train, test : scipy.sparse.coo_matrix of shape (n_customers, n_plans), float32
        A random 80/20 partition of the interactions (value 1).
    user_features : scipy.sparse.csr_matrix of shape (n_customers, n_user_columns), float32
        Identity, attributes and profile of each customer, rows L1-normalised.
    item_features : scipy.sparse.csr_matrix of shape (n_plans, n_item_columns), float32
    user_feature_labels : numpy str array of shape (n_user_columns,)
        Name of each column: the customer id for identity columns, else ``"attribute=value"``.
    item_feature_labels : numpy str array of shape (n_item_columns,)
    customer_ids : numpy str array of shape (n_customers,)
        ``"C00000"``, ``"C00001"``, ...
    customers : dict of str to numpy str array of shape (n_customers,)
        ``segment``, ``usage`` and ``device`` of each customer.
    plan_names : numpy str array of shape (n_plans,)
        Distinct readable names such as ``"Postpaid Premium Unlimited Max"``.
    plans : dict of str to numpy str array of shape (n_plans,)
        ``type``, ``price`` and ``data`` of each plan.
    dataset : fastrank.data.Dataset
        The dataset that built the feature matrices (its mappings name every row and column).
    """

    train: sp.coo_matrix
    test: sp.coo_matrix
    user_features: sp.csr_matrix
    item_features: sp.csr_matrix
    user_feature_labels: np.ndarray
    item_feature_labels: np.ndarray
    customer_ids: np.ndarray
    customers: dict
    plan_names: np.ndarray
    plans: dict
    dataset: object

    def describe_customer(self, row):
        """``"segment=student, usage=heavy, device=android"`` for the customer in ``row``."""
        return ", ".join(f"{name}={values[row]}" for name, values in self.customers.items())

    def describe_plan(self, row):
        """``"type=postpaid, price=premium, data=unlimited"`` for the plan in ``row``."""
        return ", ".join(f"{name}={values[row]}" for name, values in self.plans.items())

    def new_customer_features(self, **attributes):
        """Feature row of a customer the model has never seen, from attributes alone.

        Parameters
        ----------
        **attributes : str
            ``segment``, ``usage`` and ``device`` values (see the module constants).

        Returns
        -------
        scipy.sparse.csr_matrix of shape (1, n_user_columns), float32
            The attribute and profile columns, each weighted 1/4 (L1-normalised like the rows of
            known customers), and no identity column.

        Raises
        ------
        ValueError
            If an attribute is missing or has an unknown value.
        """
        names = _feature_names(CUSTOMER_ATTRIBUTES, [attributes.get(name) for name in CUSTOMER_ATTRIBUTES])
        feature_map = self.dataset.mapping()[1]
        unknown = [name for name in names if name not in feature_map]
        if unknown:
            raise ValueError(f"unknown customer feature {unknown[0]!r}; attributes are {dict(CUSTOMER_ATTRIBUTES)}")
        columns = [feature_map[name] for name in names]
        weights = np.full(len(columns), 1.0 / len(columns), dtype=np.float32)
        return sp.csr_matrix((weights, (np.zeros(len(columns), dtype=np.int32), columns)),
                             shape=(1, self.user_features.shape[1]))


def _feature_names(attributes, values):
    """Named features of one row: ``attribute=value`` for each attribute, then the profile."""
    names = [f"{name}={value}" for name, value in zip(attributes, values)]
    return names + ["profile=" + "/".join(str(value) for value in values)]


def _all_feature_names(attributes):
    """Every attribute value and every profile, in a fixed order."""
    names = [f"{name}={value}" for name, levels in attributes.items() for value in levels]
    profiles = np.stack(np.meshgrid(*attributes.values(), indexing="ij"), axis=-1).reshape(-1, len(attributes))
    return names + ["profile=" + "/".join(profile) for profile in profiles]


def _profiles(features, attributes):
    """Attribute values of each row of a ``make_hybrid`` membership matrix with one feature per row."""
    if not np.array_equal(np.diff(features.indptr), np.ones(features.shape[0])):
        raise AssertionError("make_hybrid was asked for exactly one feature per row")
    codes = np.unravel_index(features.indices, [len(levels) for levels in attributes.values()])
    return {name: np.asarray(levels)[code] for (name, levels), code in zip(attributes.items(), codes)}


def _plan_names(plans):
    """Distinct readable names: type, price and data tier, then a suffix per plan of that kind."""
    used = {}
    names = []
    for kind in zip(*plans.values()):
        base = " ".join(value[0].upper() + value[1:] for value in kind)
        count = used.get(base, 0)
        used[base] = count + 1
        suffix = _PLAN_SUFFIXES[count % len(_PLAN_SUFFIXES)]
        if count >= len(_PLAN_SUFFIXES):
            suffix += f" {count // len(_PLAN_SUFFIXES) + 1}"
        names.append(f"{base} {suffix}")
    return np.array(names)


def make_telecom_catalogue(n_customers=5000, n_plans=200, density=0.05, random_state=0):
    """Telecom-flavoured hybrid data from :func:`fastrank.datasets.make_hybrid`.

    Parameters
    ----------
    n_customers : int, default 5000
    n_plans : int, default 200
    density : float in (0, 1], default 0.05
        Expected fraction of the plans each customer interacted with.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator, default 0

    Returns
    -------
    TelecomCatalogue
    """
    from fastrank.data import Dataset
    from fastrank.datasets import make_hybrid

    n_profiles = int(np.prod([len(levels) for levels in CUSTOMER_ATTRIBUTES.values()]))
    n_kinds = int(np.prod([len(levels) for levels in PLAN_ATTRIBUTES.values()]))
    data = make_hybrid(n_users=n_customers, n_items=n_plans, n_user_features=n_profiles,
                       n_item_features=n_kinds, density=density, random_state=random_state,
                       features_per_row=1)
    customers = _profiles(data["user_features"], CUSTOMER_ATTRIBUTES)
    plans = _profiles(data["item_features"], PLAN_ATTRIBUTES)
    customer_ids = np.array([f"C{row:05d}" for row in range(n_customers)])
    plan_names = _plan_names(plans)

    dataset = Dataset()
    dataset.fit(customer_ids, plan_names, user_features=_all_feature_names(CUSTOMER_ATTRIBUTES),
                item_features=_all_feature_names(PLAN_ATTRIBUTES))
    user_features = dataset.build_user_features(
        (customer, _feature_names(CUSTOMER_ATTRIBUTES, values))
        for customer, values in zip(customer_ids, zip(*customers.values()))
    )
    item_features = dataset.build_item_features(
        (plan, _feature_names(PLAN_ATTRIBUTES, values)) for plan, values in zip(plan_names, zip(*plans.values()))
    )
    _, user_feature_map, _, item_feature_map = dataset.mapping()
    return TelecomCatalogue(
        train=data["train"],
        test=data["test"],
        user_features=user_features,
        item_features=item_features,
        user_feature_labels=_labels(user_feature_map),
        item_feature_labels=_labels(item_feature_map),
        customer_ids=customer_ids,
        customers=customers,
        plan_names=plan_names,
        plans=plans,
        dataset=dataset,
    )


def _labels(feature_map):
    labels = [""] * len(feature_map)
    for name, column in feature_map.items():
        labels[column] = str(name)
    return np.array(labels)


# ---------------------------------------------------------------------------- models

def popularity_model(train):
    """A fitted FastRank whose score for every user is the item's training popularity.

    Evaluating it with :mod:`fastrank.evaluation` gives the popularity baseline under exactly the
    rules the trained models are measured by (training items excluded, ties to the lower id).

    Parameters
    ----------
    train : sparse matrix of shape (n_users, n_items)

    Returns
    -------
    FastRank
        Zero embeddings and user biases; item biases equal to the number of training
        interactions of each item.
    """
    from fastrank import FastRank

    train = sp.csr_matrix(train)
    model = FastRank(no_components=1, loss="warp", random_state=0).fit(train, epochs=0)
    model.user_embeddings[:] = 0.0
    model.item_embeddings[:] = 0.0
    model.user_biases[:] = 0.0
    model.item_biases[:] = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    return model


def _train_loss(loss, catalogue, epochs, no_components, seed, threads):
    """Train one loss epoch by epoch, measuring test precision@K after each epoch.

    Returns
    -------
    model : FastRank
    curve : float array of shape (epochs,)
        Mean test precision@K after each epoch.
    seconds : float
        Time spent training (evaluation excluded).
    """
    from fastrank import FastRank
    from fastrank.evaluation import precision_at_k

    model = FastRank(no_components=no_components, loss=loss, random_state=seed)
    features = {"user_features": catalogue.user_features, "item_features": catalogue.item_features}
    curve, seconds = [], 0.0
    for epoch in progress(range(epochs), epochs, f"training {loss:<8}"):
        start = time.perf_counter()
        train = model.fit if epoch == 0 else model.fit_partial
        train(catalogue.train, epochs=1, num_threads=threads, **features)
        seconds += time.perf_counter() - start
        precision = precision_at_k(model, catalogue.test, catalogue.train, k=K, num_threads=threads, **features)
        curve.append(float(precision.mean()))
    return model, np.array(curve), seconds


def _mean_metrics(model, catalogue, threads, features=True):
    from fastrank.evaluation import ranking_metrics

    extra = {"user_features": catalogue.user_features, "item_features": catalogue.item_features} if features else {}
    metrics = ranking_metrics(model, catalogue.test, catalogue.train, k=K, num_threads=threads, **extra)
    return {name: float(values.mean()) for name, values in metrics.items()}


# ---------------------------------------------------------------------------- report

def _metric_table(results):
    """The side-by-side table: one row per model, precision/recall/NDCG at K, AUC, training time."""
    header = ["model", f"precision@{K}", f"recall@{K}", f"NDCG@{K}", "AUC", "train s"]
    rows = []
    for name, (metrics, seconds) in results.items():
        rows.append([name] + [f"{metrics[key]:.4f}" for key in ("precision", "recall", "ndcg", "auc")]
                    + ["-" if seconds is None else f"{seconds:.2f}"])
    return format_table(header, rows, "<>>>>>")


def _pick_known_customers(catalogue, count=2):
    """Customers with training and test interactions, the second unlike the first in segment and device."""
    train_counts = np.bincount(catalogue.train.row, minlength=catalogue.train.shape[0])
    test_counts = np.bincount(catalogue.test.row, minlength=catalogue.test.shape[0])
    eligible = np.flatnonzero((train_counts > 0) & (test_counts > 0))
    if eligible.size == 0:
        return []
    first = eligible[0]
    segment, device = catalogue.customers["segment"], catalogue.customers["device"]
    unlike = eligible[(segment[eligible] != segment[first]) & (device[eligible] != device[first])]
    rest = eligible[1:]
    others = np.concatenate([unlike, rest[~np.isin(rest, unlike)]])
    return [int(row) for row in np.concatenate([[first], others])[:count]]


def _format_top(catalogue, items, scores, held_out=()):
    lines = []
    width = max((len(catalogue.plan_names[item]) for item in items if item >= 0), default=0)
    for rank, (item, score) in enumerate(zip(items, scores), start=1):
        if item < 0:
            continue
        mark = "  <- chosen in the test split" if item in held_out else ""
        lines.append(f"  {rank}. {catalogue.plan_names[item]:<{width}}  {score:7.3f}{mark}")
    return "\n".join(lines)


def _known_customer_section(model, catalogue, row, threads):
    train = catalogue.train.tocsr()
    test = catalogue.test.tocsr()
    items, scores = model.recommend(row, k=K, user_features=catalogue.user_features,
                                    item_features=catalogue.item_features, filter_interactions=train,
                                    num_threads=threads)
    held_out = set(test.indices[test.indptr[row]:test.indptr[row + 1]].tolist())
    seen = train.indptr[row + 1] - train.indptr[row]
    title = (f"Customer {catalogue.customer_ids[row]} ({catalogue.describe_customer(row)}), "
             f"{seen} plan{'' if seen == 1 else 's'} in training:")
    return title + "\n" + _format_top(catalogue, items[0], scores[0], held_out)


def _new_customer_section(model, catalogue, threads):
    row = catalogue.new_customer_features(**NEW_CUSTOMER)
    user_features = sp.vstack([catalogue.user_features, row], format="csr")
    new_row = catalogue.user_features.shape[0]
    items, scores = model.recommend(new_row, k=K, user_features=user_features,
                                    item_features=catalogue.item_features, num_threads=threads)
    description = ", ".join(f"{name}={value}" for name, value in NEW_CUSTOMER.items())
    lines = [f"New customer ({description}), no history, features only:",
             _format_top(catalogue, items[0], scores[0])]
    peers = np.flatnonzero(np.logical_and.reduce(
        [catalogue.customers[name] == value for name, value in NEW_CUSTOMER.items()]))
    if peers.size:
        train = catalogue.train.tocsr()
        counts = np.bincount(train[peers].indices, minlength=train.shape[1])
        favourites = set(np.argsort(-counts, kind="stable")[:10].tolist())
        agree = len(favourites & set(items[0].tolist()))
        lines.append(f"  ({agree} of these {K} are among the 10 plans most chosen by the {peers.size} "
                     f"existing customers with this profile)")
    return "\n".join(lines)


def _write_curves_csv(path, curves):
    epochs = len(next(iter(curves.values())))
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("epoch," + ",".join(curves) + "\n")
        for epoch in range(epochs):
            stream.write(f"{epoch + 1}," + ",".join(f"{curve[epoch]:.6f}" for curve in curves.values()) + "\n")


def plot_curves(path, curves, baseline):
    """Write a PNG of test precision@K per epoch, one line per loss, baseline dashed.

    Parameters
    ----------
    path : str
        Destination ``.png`` file.
    curves : dict of str to float array of shape (epochs,)
        Test precision@K after each epoch, per loss.
    baseline : float
        The popularity baseline's precision@K.

    Returns
    -------
    bool
        False (and nothing written) when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for loss, curve in curves.items():
        axes.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=loss)
    axes.axhline(baseline, color="grey", linestyle="--", label="popularity")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"test precision@{K}")
    axes.set_title("fastrank demo: telecom plans, test precision per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=110)
    return True


def run_demo(output="demo_output", epochs=None, threads=1, seed=0, quick=False, n_customers=None,
             n_plans=None):
    """Train every loss on the telecom catalogue and print the comparison (``fastrank demo``).

    Parameters
    ----------
    output : str, default "demo_output"
        Directory for ``precision_at_5_by_epoch.png`` and ``.csv`` (created if missing).
    epochs : int, optional
        Training epochs per loss (20, or 3 with ``quick``).
    threads : int, default 1
        Training and evaluation threads; 1 makes the printout reproducible.
    seed : int, default 0
        Seed of the data and of every model.
    quick : bool, default False
        Tiny data and few epochs (a smoke test).
    n_customers, n_plans : int, optional
        Override the data size.

    Returns
    -------
    int
        0.
    """
    import fastrank

    started = time.perf_counter()
    os.makedirs(output, exist_ok=True)  # fail before training, not after
    size = dict(QUICK_SIZE if quick else FULL_SIZE)
    size.update({key: value for key, value in
                 (("epochs", epochs), ("n_customers", n_customers), ("n_plans", n_plans)) if value is not None})
    catalogue = make_telecom_catalogue(size["n_customers"], size["n_plans"], random_state=seed)
    _print_introduction(fastrank, catalogue, size, threads)

    results = {"popularity": (_mean_metrics(popularity_model(catalogue.train), catalogue, threads, False), None)}
    curves, models = {}, {}
    for loss in LOSSES:
        models[loss], curves[loss], seconds = _train_loss(loss, catalogue, size["epochs"], size["no_components"],
                                                          seed, threads)
        results[loss] = (_mean_metrics(models[loss], catalogue, threads), seconds)

    print(f"\nTest metrics at k={K} (each customer's training plans are not candidates):")
    print(_metric_table(results))
    print("(logistic reads every entry as a positive label: with implicit feedback and no negatives it\n"
          " has nothing to contrast; use it for data with explicit negative entries.)")

    print(f"\nTop-{K} plans from the WARP model, plans already chosen in training left out:")
    for row in _pick_known_customers(catalogue):
        print(_known_customer_section(models["warp"], catalogue, row, threads))
    print(_new_customer_section(models["warp"], catalogue, threads))

    _write_outputs(output, curves, results["popularity"][0]["precision"])
    print(f"\nDone in {time.perf_counter() - started:.1f} s.")
    return 0


def _print_introduction(fastrank, catalogue, size, threads):
    n_customers, n_plans = catalogue.train.shape
    print(f"fastrank {fastrank.__version__} demo ({fastrank.instruction_set} kernels, "
          f"OpenMP {'on' if fastrank.openmp_enabled() else 'off'}): telecom plan recommendations")
    print(f"Synthetic data from fastrank.datasets.make_hybrid, {catalogue.train.nnz} training / "
          f"{catalogue.test.nnz} test interactions (random 80/20 split):")
    print(f"  {n_customers} customers described by segment, usage and device, e.g. "
          f"{catalogue.customer_ids[0]}: {catalogue.describe_customer(0)}")
    print(f"  {n_plans} plans described by type, price and data tier, e.g. "
          f"{catalogue.plan_names[0]}: {catalogue.describe_plan(0)}")
    print("  Features of each: its identity, its attribute values, and its profile (the three combined).")
    print(f"Training WARP, BPR, WARP-KOS and logistic: {size['epochs']} epochs, {size['no_components']} "
          f"components, {threads} thread{'s' if threads > 1 else ''}.", flush=True)


def _write_outputs(output, curves, baseline):
    csv_path = os.path.join(output, f"precision_at_{K}_by_epoch.csv")
    _write_curves_csv(csv_path, curves)
    png_path = os.path.join(output, f"precision_at_{K}_by_epoch.png")
    print()
    if plot_curves(png_path, curves, baseline):
        print(f"Test precision@{K} per epoch plotted in {png_path} (values in {csv_path}).")
    else:
        print(f"matplotlib is not installed, so no plot was drawn: install it with `pip install matplotlib` "
              f"(values in {csv_path}).")
