"""The FastRank estimator: parameters, validation, training, prediction, saving."""

import inspect
import json
import numbers
import os
import secrets
import threading
import warnings
import weakref
import zipfile
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from fastrank import _ranking, _sgd
from fastrank._validation import (
    aligned_empty,
    cache_aligned,
    check_features,
    check_id_range,
    check_id_scalar,
    check_ids,
    check_interactions,
    check_positive_int,
    check_sample_weight,
    is_identity_pattern,
    is_finite_real,
    is_integer,
    is_real,
    packed_feature_rows,
    to_csr,
)

LOSSES = {"logistic": _sgd.LOGISTIC, "bpr": _sgd.BPR, "warp": _sgd.WARP, "warp-kos": _sgd.WARP_KOS}
LEARNING_SCHEDULES = ("adagrad", "adadelta", "sgd")
FORMAT_NAME = "fastrank-model"
FORMAT_VERSION = 1
# zip (and so .npz) member names are at most this many bytes long
MAX_ARCHIVE_NAME_BYTES = 65535

# More threads than any machine fastrank targets has cores; far above it, OpenMP runtimes fail
# to start the threads (libgomp exits the process, or it crashes) instead of raising.
MAX_THREADS = 1024
# Arrays that make up a trained model, per side; the optimizer state follows the parameters.
_SIDE_ARRAYS = ("embeddings", "biases", "embedding_acc", "bias_acc", "embedding_momentum", "bias_momentum")
# how many of each side's _SIDE_ARRAYS a learning schedule keeps (the rest are None)
_STATE_ARRAYS = {"sgd": 2, "adagrad": 4, "adadelta": 6}
# The attribute holding each of a side's _SIDE_ARRAYS: the public parameters, then private state.
_SIDE_ATTRIBUTES = {
    side: tuple(f"{side}_{array}" if array in ("embeddings", "biases") else f"_{side}_{array}"
                for array in _SIDE_ARRAYS)
    for side in ("user", "item")
}

# Everything a model's training changes besides the contents of its arrays
_TRAINING_STATE = (_SIDE_ATTRIBUTES["user"] + _SIDE_ATTRIBUTES["item"]
                   + ("_rng", "_n_users", "_n_items", "_fitted_schedule", "_fitted_components", "_diverged",
                      "_user_rows_are_features", "_item_rows_are_features"))


def _check_finite_representations(matrix, side):
    """Raise ``ValueError`` unless every value of a side's representation matrix is finite."""
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{side} representations contain NaN or infinite values (non-finite parameters, "
                         "or feature weights too large for float32)")


def _describe(value):
    """A short account of an object for an error message: an array's dtype and shape, else its type."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


# Users are laid out in runs of consecutive ids: 16 float32 biases fill one cache line, so no
# bias line (nor the neighbouring embedding rows a hardware prefetcher pulls in) is written by two
# threads except where a cut between blocks falls.
_USERS_PER_RUN = 16

# Losses trained in one stratum more than threads, their cells cut into parts (see _fit_partial).
_LOSSES_IN_FINER_STRATA = ("warp", "warp-kos")


def _thread_user_order(n_users, rng):
    """The order in which to lay out users before cutting the examples into one block per thread.

    Parameters
    ----------
    n_users : int
        Number of users (ids ``0 .. n_users - 1``).
    rng : numpy.random.Generator
        Source of the random order.

    Returns
    -------
    int32 array of shape (n_users,)
        A permutation of the user ids: runs of ``_USERS_PER_RUN`` consecutive ids, the runs in a
        random order. Each thread then gets a random sample of runs, so an id order that follows
        activity (the busiest users first, say) does not give one thread all the cheap,
        cache-resident rows, while a run's rows and biases stay with one thread.
    """
    return _sgd.run_order(int(rng.integers(0, 2**63)), n_users, _USERS_PER_RUN)


def _positive_integer(value):
    # the kernels take C ints
    return is_integer(value) and 1 <= value <= np.iinfo(np.int32).max


def _positive_real(value):
    return is_finite_real(value) and value > 0


def _non_negative_real(value):
    return is_finite_real(value) and value >= 0


def _open_unit_interval(value):
    return is_real(value) and 0 < value < 1


def _random_state_like(value):
    if is_integer(value):
        return value >= 0
    return value is None or isinstance(value, (np.random.RandomState, np.random.Generator))


def _accumulator_start(value):
    # The accumulators are float32: a start beyond its range would be inf and freeze training, and
    # one below its normal range (subnormal) breaks the reciprocal square root of the AVX2 loop.
    return value is None or (_positive_real(value) and 1e-30 <= value <= np.finfo(np.float32).max)


# Declarative parameter checks: name -> (predicate, what a valid value is).
_PARAMETER_CONSTRAINTS = {
    "no_components": (_positive_integer, "a positive integer below 2**31"),
    "k": (_positive_integer, "a positive integer below 2**31"),
    "n": (_positive_integer, "a positive integer below 2**31"),
    "learning_schedule": (lambda v: v in LEARNING_SCHEDULES, f"one of {LEARNING_SCHEDULES}"),
    "loss": (lambda v: v in LOSSES, f"one of {tuple(LOSSES)}"),
    "learning_rate": (_positive_real, "a positive finite number"),
    "rho": (_open_unit_interval, "a number strictly between 0 and 1"),
    "epsilon": (_positive_real, "a positive finite number"),
    "item_alpha": (_non_negative_real, "a non-negative finite number"),
    "user_alpha": (_non_negative_real, "a non-negative finite number"),
    "max_sampled": (_positive_integer, "a positive integer below 2**31"),
    "random_state": (_random_state_like, "None, a non-negative int, a numpy RandomState or a numpy Generator"),
    "initial_accumulator": (_accumulator_start, "None or a number between 1e-30 and 3.4e38"),
    "debias": (lambda v: v is None or (isinstance(v, str) and v in _sgd.DEBIAS), "None, 'zerosum' or 'pos2neg2'"),
    "debias_weight": (_non_negative_real, "a non-negative finite number"),
}

# Adagrad's starting accumulator per loss when ``initial_accumulator=None`` (see the class docstring).
_DEFAULT_INITIAL_ACCUMULATOR = {"warp": 1.0, "warp-kos": 1.0, "bpr": 0.1, "logistic": 0.1}


def _resolve_random_state(random_state):
    """A private numpy Generator derived from the ``random_state`` parameter."""
    if random_state is None:
        return np.random.default_rng()
    if is_integer(random_state):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**32, size=4, dtype=np.uint64))
    return np.random.default_rng(random_state.integers(0, 2**63, size=4, dtype=np.uint64))


# One lock per model, held by fit, fit_partial and save: two of them at once on one model (from
# Python threads) gave the kernels arrays replaced half-way (fit_partial's 200,000 items with
# fit's 1-item arrays) and save wrote files missing arrays. Scoring takes no lock: it reads the
# arrays it was given, which its kernels check. Kept outside the model, which then pickles,
# copies and clones as before.
_TRAINING_LOCKS = weakref.WeakKeyDictionary()
_TRAINING_LOCKS_GUARD = threading.Lock()


def _training_lock(model):
    with _TRAINING_LOCKS_GUARD:
        lock = _TRAINING_LOCKS.get(model)
        if lock is None:
            lock = _TRAINING_LOCKS[model] = threading.RLock()
        return lock


# A process forked after OpenMP started its threads inherits a thread pool that libgomp cannot
# use: the child's first parallel region waits forever (a multiprocessing Pool with the 'fork'
# start method hung). Children of such a parent run on one thread instead, with a warning.
_OPENMP_STARTED = False
_FORKED_AFTER_OPENMP = False


def _note_fork_in_child():
    global _FORKED_AFTER_OPENMP
    _FORKED_AFTER_OPENMP = _FORKED_AFTER_OPENMP or _OPENMP_STARTED


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork_in_child)


class UnsupportedCombinationError(ValueError, NotImplementedError):
    """Arguments valid one by one that fastrank does not support together: a ``ValueError`` like
    every rejected input, and a ``NotImplementedError``, which LightFM raises for them, so that
    code written for either catches it."""


def _epoch_range(epochs, verbose):
    """``range(epochs)`` with a progress bar (tqdm when installed, else one line per epoch)."""
    if not verbose:
        return range(epochs)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _printing_range(epochs)
    return tqdm(range(epochs), desc="Epoch", unit="epoch")


def _printing_range(epochs):
    for epoch in range(epochs):
        yield epoch
        print(f"Epoch {epoch + 1}/{epochs} done", flush=True)


class FastRank:
    """Hybrid matrix-factorisation recommender trained by Hogwild SGD (LightFM-compatible).

    A user's representation is the weighted sum of the embeddings (and biases) of the features in
    its row of ``user_features``; without a feature matrix each user is its own feature (and the
    same for items). The score of a pair is ``user_repr . item_repr + user_bias + item_bias``.

    Parameters
    ----------
    no_components : int, default 10
        Dimension of the embeddings.
    k : int, default 5
        WARP-KOS: the k-th best of the sampled positives is used.
    n : int, default 10
        WARP-KOS: number of positives sampled per user.
    learning_schedule : {"adagrad", "adadelta", "sgd"}, default "adagrad"
        LightFM's two adaptive schedules, or plain SGD (not in LightFM): a fixed step of
        ``learning_rate`` times the gradient and no optimizer state, so half the parameter memory
        and the fastest epochs. Plain SGD usually needs a larger ``learning_rate`` or more epochs.
    loss : {"logistic", "bpr", "warp", "warp-kos"}, default "logistic"
        ``logistic``: values > 0 are positives, values <= 0 negatives. ``bpr``: for each positive,
        one negative drawn uniformly among the items the user has not interacted with (LightFM
        samples BPR negatives by popularity instead). ``warp``: negatives drawn uniformly until one
        violates the margin, weighted by the log of the estimated rank. ``warp-kos``: k-OS WARP.
    learning_rate : float, default 0.05
        Adagrad and SGD step size (adadelta does not use it).
    rho : float, default 0.95
        Adadelta decay.
    epsilon : float, default 1e-6
        Adadelta conditioning.
    item_alpha, user_alpha : float, default 0.0
        L2 penalty on item/user feature parameters, applied to the features each example touches.
    max_sampled : int, default 10
        WARP: maximum number of negatives drawn per positive.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seed of initialisation, shuffling and sampling; resolved when ``fit`` (or the first
        ``fit_partial``) runs. With an int seed and ``num_threads=1`` training is bit-reproducible;
        with more threads too when it runs in strata (small models without side features: see
        docs/performance.md), else Hogwild races make runs differ (parameters noticeably,
        metrics little).
    initial_accumulator : float or None, default None
        Starting value of adagrad's sums of squared gradients (not in LightFM). The first step on
        a coordinate is ``learning_rate * gradient / sqrt(initial_accumulator)``. None picks per
        loss: 1.0 (LightFM's value) for ``warp`` and ``warp-kos``, whose gradients carry a
        log-rank weight of up to 10, and 0.1 for ``bpr`` and ``logistic``, whose gradients are
        bounded by 1 and would otherwise move the near-zero initial embeddings very slowly.
    debias : {None, "zerosum", "pos2neg2"}, default None
        Popularity-debiasing score regulariser of Rhee, Cho and Suh (RecSys 2022), for ``bpr``
        and ``warp`` only. For an example of user u with positive p and negative n, ``zerosum``
        adds ``debias_weight * -log(1 - tanh(|s_up + s_un|))`` to the loss (a user's positive and
        negative scores are pushed to sum to zero); ``pos2neg2`` draws a second positive p2 and
        a second negative n2 and adds ``debias_weight * (-log(1 - tanh(|s_up - s_up2|))
        - log(1 - tanh(|s_un - s_un2|)))`` (a user's positives score alike, and its negatives).
        The absolute values inside are clipped at 9 so the terms stay finite.
    debias_weight : float, default 1.0
        Strength of the regulariser; 0 trains exactly as ``debias=None``.

    Attributes
    ----------
    user_embeddings : float32 array of shape (n_user_features, no_components)
    user_biases : float32 array of shape (n_user_features,)
    item_embeddings : float32 array of shape (n_item_features, no_components)
    item_biases : float32 array of shape (n_item_features,)

    These arrays may be replaced by hand (e.g. to score with factors trained elsewhere): scoring
    needs float32 arrays of the shapes above with one width on both sides; training and
    :meth:`save` also need the fitted ``no_components``. Every call checks this first and raises
    ``TypeError``/``ValueError`` naming the array that does not fit.
    """

    # None until fit, as in LightFM (``model.item_embeddings is None`` tells an unfitted model);
    # class attributes, so that ``__init__`` stores the parameters only
    user_embeddings = None
    user_biases = None
    item_embeddings = None
    item_biases = None

    def __init__(
        self,
        no_components=10,
        k=5,
        n=10,
        learning_schedule="adagrad",
        loss="logistic",
        learning_rate=0.05,
        rho=0.95,
        epsilon=1e-6,
        item_alpha=0.0,
        user_alpha=0.0,
        max_sampled=10,
        random_state=None,
        initial_accumulator=None,
        debias=None,
        debias_weight=1.0,
    ):
        self.no_components = no_components
        self.k = k
        self.n = n
        self.learning_schedule = learning_schedule
        self.loss = loss
        self.learning_rate = learning_rate
        self.rho = rho
        self.epsilon = epsilon
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.random_state = random_state
        self.initial_accumulator = initial_accumulator
        self.debias = debias
        self.debias_weight = debias_weight

    # ------------------------------------------------------------------ scikit-learn contract
    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(name for name in signature.parameters if name != "self")

    def get_params(self, deep=True):
        """Constructor parameters as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise ``ValueError``. Returns self."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for FastRank; valid parameters: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {
            name: parameter.default for name, parameter in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not (isinstance(value, type(defaults.get(name))) and value == defaults.get(name))
        ]
        return f"FastRank({', '.join(changed)})"

    def _check_params(self):
        # Every fit_partial call checks the parameters, and a loop of one-epoch calls on a small
        # matrix spent 15-30 us of each doing so: the values (with their types, so that 1, 1.0 and
        # True stay apart) that passed last time are not checked again. Only values that passed
        # are kept, and those compare with ==, one pair at a time, without raising.
        values = tuple([(type(value), value) for value in map(self.__getattribute__, _PARAMETER_CONSTRAINTS)])
        if values == getattr(self, "_checked_params", None):
            return
        for name, (is_valid, description) in _PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            try:
                valid = bool(is_valid(value))
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise ValueError(f"FastRank parameter {name} must be {description}, got {value!r}")
        if self.debias is not None and self.loss not in ("bpr", "warp"):
            raise ValueError(f"debias={self.debias!r} needs loss='bpr' or loss='warp', got loss={self.loss!r}")
        self._checked_params = values

    # ------------------------------------------------------------------ state
    def _is_fitted(self):
        return getattr(self, "item_embeddings", None) is not None

    def _check_fitted(self, training=False):
        if not self._is_fitted():
            raise ValueError("This FastRank model is not fitted yet: call fit or fit_partial first")
        self._check_parameter_arrays(training)

    def _check_parameter_arrays(self, training=False):
        """Raise unless the parameter arrays fit together: the kernels index them by shape alone,
        and the public ones (``user_embeddings``, ...) can be assigned by hand.

        Scoring needs, on each side, float32 embeddings of shape (n_features, width), the same
        width on both sides, and float32 biases of shape (n_features,). Training (``training``)
        also needs the width the model was fitted with and the fitted schedule's optimizer state,
        shaped like the embeddings and biases.
        """
        if getattr(self, "_diverged", False):
            raise ValueError("This FastRank model's training diverged: call fit to start again")
        # (a model never fitted has no state attributes, even if an array was assigned to it)
        n_arrays = _STATE_ARRAYS.get(getattr(self, "_fitted_schedule", None))
        if n_arrays is None or not is_integer(getattr(self, "_fitted_components", None)):
            raise ValueError("This FastRank model's state is incomplete: call fit to start again")
        width = self._fitted_components if training else None
        for side in ("user", "item"):
            names = _SIDE_ATTRIBUTES[side]
            values = [getattr(self, name) for name in names]
            n_rows = None
            for index in range(n_arrays if training else 2):
                value = values[index]
                if not isinstance(value, np.ndarray) or value.dtype != np.float32:
                    raise TypeError(f"{names[index]} must be a float32 numpy array, got {_describe(value)}")
                if index == 0:
                    if value.ndim != 2:
                        raise ValueError(f"{names[0]} must be 2-D, got shape {value.shape}")
                    n_rows = value.shape[0]
                    width = value.shape[1] if width is None else width
                embedding_like = index % 2 == 0  # (_SIDE_ARRAYS alternates rows and biases)
                if value.shape != ((n_rows, width) if embedding_like else (n_rows,)):
                    self._raise_misshapen(side, names[index], value.shape, n_rows, width, embedding_like, training)
            for name, value in zip(names[n_arrays:] if training else (), values[n_arrays:]):
                if value is not None:
                    raise ValueError(f"{name} must be None with learning_schedule={self._fitted_schedule!r}")

    @staticmethod
    def _raise_misshapen(side, name, shape, n_rows, width, embedding_like, training):
        if embedding_like:
            source = "no_components as fitted" if training else "the width of user_embeddings"
            expected = (n_rows, width)
            meaning = f"{side} feature rows x {width} components, {source}"
        else:
            expected = (n_rows,)
            meaning = f"one per row of {side}_embeddings"
        raise ValueError(f"{name} has shape {shape}; the model needs {expected} ({meaning})")

    def _reset_state(self):
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS:
                setattr(self, self._array_attribute(side, array), None)
        self._rng = None
        self._n_users = 0
        self._n_items = 0
        self._fitted_schedule = None
        self._fitted_components = None
        self._diverged = False
        self._user_rows_are_features = None
        self._item_rows_are_features = None

    def _saved_state(self):
        """What fit and fit_partial change before training starts, for :meth:`_restore_state`:
        the attributes themselves (arrays are replaced, never written, before training) and the
        generator's position (drawing new rows moves it)."""
        attributes = {name: self.__dict__[name] for name in _TRAINING_STATE if name in self.__dict__}
        rng = attributes.get("_rng")
        return attributes, None if rng is None else rng.bit_generator.state

    def _restore_state(self, saved):
        attributes, rng_state = saved
        for name in _TRAINING_STATE:
            self.__dict__.pop(name, None)
        self.__dict__.update(attributes)
        if rng_state is not None:
            self._rng.bit_generator.state = rng_state

    @staticmethod
    def _array_attribute(side, array):
        return _SIDE_ATTRIBUTES[side][_SIDE_ARRAYS.index(array)]

    def _side_parameters(self, side):
        return tuple([getattr(self, name) for name in _SIDE_ATTRIBUTES[side]])

    def _new_rows(self, count):
        """Fresh parameter rows for one side: (embeddings, biases, accumulators..., momenta...),
        each array starting on a cache line (``_validation.aligned_empty``)."""
        d = self._fitted_components

        def filled(shape, value):
            array = aligned_empty(shape)
            array.fill(value)
            return array

        embeddings = aligned_empty((count, d))
        self._rng.random(dtype=np.float32, out=embeddings)
        embeddings -= np.float32(0.5)
        embeddings /= np.float32(d)
        biases = filled(count, 0.0)
        if self._fitted_schedule == "sgd":
            return embeddings, biases, None, None, None, None
        if self._fitted_schedule == "adagrad":
            start = self._initial_accumulator()
            return embeddings, biases, filled((count, d), start), filled(count, start), None, None
        return (embeddings, biases, filled((count, d), 0.0), filled(count, 0.0),
                filled((count, d), 0.0), filled(count, 0.0))

    def _initial_accumulator(self):
        if self.initial_accumulator is None:
            return _DEFAULT_INITIAL_ACCUMULATOR[self.loss]
        return float(self.initial_accumulator)

    def _grow_side(self, side, n_features):
        """Make room for ``n_features`` feature rows, keeping the existing rows exactly."""
        current = self._side_parameters(side)
        existing = 0 if current[0] is None else current[0].shape[0]
        if n_features <= existing:
            return
        fresh = self._new_rows(n_features - existing)
        for array, old, new in zip(_SIDE_ARRAYS, current, fresh):
            if new is None or old is None:
                combined = new
            else:
                combined = aligned_empty((old.shape[0] + new.shape[0],) + old.shape[1:])
                np.concatenate([old, new], out=combined)
            setattr(self, self._array_attribute(side, array), combined)

    def __setstate__(self, state):
        # Unpickling and copy.deepcopy rebuild arrays wherever numpy puts them: align them here,
        # so that the copy, not the first training call, owns the arrays a user then holds.
        self.__dict__.update(state)
        if self._is_fitted():
            self._align_parameters()

    def _align_parameters(self):
        """Give the kernels cache-aligned parameter arrays: arrays made here, by ``load``, by
        unpickling or by ``copy.deepcopy`` already are; ones assigned by hand are copied once."""
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS:
                name = self._array_attribute(side, array)
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, cache_aligned(value))

    # ------------------------------------------------------------------ training
    def fit(
        self,
        interactions,
        user_features=None,
        item_features=None,
        sample_weight=None,
        epochs=1,
        num_threads=1,
        verbose=False,
    ):
        """Reset the model and train it on ``interactions``.

        Parameters
        ----------
        interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
            Any sparse format or a dense array, any real dtype (bool, int, float: used as
            float32); duplicate entries are summed. For ``logistic``, values > 0 are positives
            and values <= 0 negatives; the ranking losses train on the entries with values > 0.
        user_features : sparse matrix or array-like of shape (n_users, n_user_features), optional
            Each user's features and their weights (any real dtype, used as float32); None means
            each user is its own feature.
        item_features : sparse matrix or array-like of shape (n_items, n_item_features), optional
        sample_weight : sparse matrix of shape (n_users, n_items), optional
            Non-negative weight per interaction (any real dtype, used as float32), with the same
            entries as ``interactions`` (not supported by ``warp-kos``).
        epochs : int, default 1
        num_threads : int, default 1
            Hogwild threads, 1 to 1024. ``num_threads=1`` is bit-reproducible; more threads are
            when training runs in strata (see ``random_state``).
        verbose : bool, default False
            Show a progress bar over epochs.

        Returns
        -------
        self
        """
        with _training_lock(self):
            return self._fit_partial(
                interactions, user_features, item_features, sample_weight, epochs, num_threads, verbose, reset=True
            )

    def fit_partial(
        self,
        interactions,
        user_features=None,
        item_features=None,
        sample_weight=None,
        epochs=1,
        num_threads=1,
        verbose=False,
    ):
        """Continue training (or start, if the model is new) without resetting parameters.

        Accepts the same arguments as :meth:`fit`. The matrices may have **more** users, items or
        feature columns than the model has seen: parameter arrays grow, existing rows are kept
        exactly and new rows are initialised like fresh ones. Fewer users, items or feature
        columns than the model has raise ``ValueError``.

        Returns
        -------
        self
        """
        with _training_lock(self):
            return self._fit_partial(
                interactions, user_features, item_features, sample_weight, epochs, num_threads, verbose
            )

    partial_fit = fit_partial

    def _fit_partial(
        self,
        interactions,
        user_features,
        item_features,
        sample_weight,
        epochs,
        num_threads,
        verbose,
        reset=False,
        _script=None,
    ):
        # ``reset`` (from fit) discards the model, but only once every input has been validated,
        # so a rejected fit leaves a trained model intact.
        # ``_script`` is a test hook: the integers the sampler returns instead of random draws.
        self._check_params()
        epochs = self._check_epochs(epochs)
        num_threads = self._check_num_threads(num_threads)
        interactions = check_interactions(interactions, num_threads=num_threads, arrays_only=True)
        n_users, n_items = interactions.shape
        user_features = self._fit_features(user_features, n_users, "user_features")
        item_features = self._fit_features(item_features, n_items, "item_features")
        if sample_weight is not None:
            if self.loss == "warp-kos":
                raise UnsupportedCombinationError("sample_weight is not supported with loss='warp-kos'")
            weights = check_sample_weight(sample_weight, interactions)
        else:
            weights = None  # all ones, without an array of them
        examples = self._training_examples(interactions, weights)

        n_user_features = n_users if user_features is None else user_features.shape[1]
        n_item_features = n_items if item_features is None else item_features.shape[1]
        if self._is_fitted() and not reset:
            # Everything is checked before anything grows, so a rejected call changes nothing.
            self._check_parameter_arrays(training=True)
            for side, features in (("user", user_features), ("item", item_features)):
                if features is None:  # (identity: a model trained with features needs them again)
                    self._check_rows_are_ids(side, f"{side}_features", "fit_partial")
            self._check_compatible(n_users, n_items, n_user_features, n_item_features)
        # Allocating the (new or grown) parameters can still fail: the model is then put back as
        # it was, not left reset or grown on one side only.
        saved = self._saved_state()
        try:
            if reset or not self._is_fitted():
                self._reset_state()
                self._rng = _resolve_random_state(self.random_state)
                self._fitted_schedule = self.learning_schedule
                self._fitted_components = int(self.no_components)
            self._grow_side("user", n_user_features)
            self._grow_side("item", n_item_features)
            for side, features in (("user", user_features), ("item", item_features)):
                if features is not None or getattr(self, f"_{side}_rows_are_features", None) is None:
                    setattr(self, f"_{side}_rows_are_features", features is not None)
        except MemoryError:
            self._restore_state(saved)
            raise MemoryError(
                f"not enough memory for the parameters of {n_user_features} user and {n_item_features} item "
                f"features x no_components={self.no_components} (float32, with optimizer state); the model "
                "is unchanged") from None
        except BaseException:
            self._restore_state(saved)
            raise
        self._n_users = max(self._n_users, n_users)
        self._n_items = max(self._n_items, n_items)

        if _script is not None:
            if num_threads != 1:
                raise ValueError("a scripted sampler needs num_threads=1")
            _script = np.ascontiguousarray(_script, dtype=np.int32)
            if _script.size and _script.min() < 0:
                raise ValueError("a scripted sampler needs non-negative draws")
        self._align_parameters()
        kernel_arguments = dict(
            loss=LOSSES[self.loss],
            positive_indptr=examples["positive_indptr"],
            positive_indices=examples["positive_indices"],
            user_features=packed_feature_rows(user_features),
            user_parameters=self._side_parameters("user"),
            user_alpha=self.user_alpha,
            item_features=packed_feature_rows(item_features),
            item_parameters=self._side_parameters("item"),
            item_alpha=self.item_alpha,
            n_items=n_items,
            # the fitted values, which the arrays have, not the parameters (set_params from another
            # thread between the checks and this call sent adagrad over NULL accumulators)
            no_components=self._fitted_components,
            schedule=_sgd.SCHEDULES[self._fitted_schedule],
            learning_rate=self.learning_rate,
            rho=self.rho,
            epsilon=self.epsilon,
            max_sampled=self.max_sampled,
            k=self.k,
            n=self.n,
            debias=_sgd.DEBIAS[self._effective_debias()],
            debias_weight=self.debias_weight,
            num_threads=num_threads,
            script=_script,
        )
        # Each thread trains on its own users (see _sgd.shuffled_examples); without OpenMP
        # there is one thread, and one block keeps the single-thread order.
        n_blocks = num_threads if _sgd.openmp_enabled() else 1
        user_order = _thread_user_order(n_users, self._rng) if n_blocks > 1 else None
        # WARP and WARP-kOS: one stratum more than threads, so that a thread done with a block
        # finds another ready (_sgd.train_strata). On MovieLens 100K at 2 threads their epochs
        # were 1.04x-1.26x (WARP) and 1.07x-1.24x (WARP-kOS) as fast as with one per thread
        # (epoch for epoch on one model, four runs). BPR and logistic visit whole cells, 9 blocks
        # with 3 strata, which left them even there (0.98x-1.12x); and smaller item groups hold
        # more of a user's positives where popular items are dense: on a 2,000 x 600 set of
        # 136,000 power-law positives BPR's negative draws hit positives so often that its
        # epochs took 1.6x-1.8x as long (WARP 1.07x-1.10x, WARP-kOS even), so BPR and logistic
        # keep one stratum per thread (rounds in lockstep).
        n_strata = n_blocks + 1 if self.loss in _LOSSES_IN_FINER_STRATA else n_blocks
        stratified = n_blocks > 1 and self._trains_in_strata(kernel_arguments, n_items, n_blocks, n_strata,
                                                             examples["items"].shape[0])
        # WARP and WARP-kOS lose precision when a user meets the items of one group for long
        # (_sgd.STRATUM_PART_EXAMPLES, measured with 2 strata), so their cells are cut into parts
        # of as many examples per user: user runs, and so parts, shrink as 1 / n_strata. With 3
        # strata and parts of 2048, WARP's test p@10 on MovieLens 100K fell from 0.206 to 0.200
        # (2 threads, 4 seeds); with 1365, 0.2025 (WARP-kOS 0.191 against 0.188), and epochs
        # were as short as with 1024 (smaller parts cost time: each block moves its user run's
        # and item group's rows to the core that trains it). Logistic and BPR measured the same
        # precision and AUC with whole cells, and were no faster in parts.
        part_examples = (_sgd.STRATUM_PART_EXAMPLES * 2 // n_strata if self.loss in _LOSSES_IN_FINER_STRATA
                         else max(1, examples["items"].shape[0]))
        chunk_items = _sgd.stratum_chunk_items(self.no_components, n_items, n_strata)
        for _ in _epoch_range(epochs, verbose):
            shuffle_seed = int(self._rng.integers(0, 2**63))
            seed = int(self._rng.integers(0, 2**63))
            # The kernel walks the examples in memory order, so they are gathered shuffled.
            if stratified:
                # k-OS samples its positives among the user's positives in the block's group (its
                # examples are its positives, so the layout groups them as it goes)
                kos = self.loss == "warp-kos"
                (users, items, labels, weights, block_ranges, candidates, block_candidates, rounds, groups,
                 group_starts, grouped_items) = _sgd.stratified_examples(
                    shuffle_seed, examples["user_starts"], examples["items"], examples["labels"], examples["weights"],
                    user_order, n_strata, n_items, chunk_items,
                    part_examples=part_examples, group_positives=kos, num_threads=n_blocks)
                blocks = dict(block_ranges=block_ranges, candidate_items=candidates,
                              block_candidates=block_candidates, rounds=rounds)
                if kos:
                    blocks.update(block_groups=groups, group_positive_starts=group_starts,
                                  group_positive_indices=grouped_items)
            else:
                users, items, labels, weights, block_bounds = _sgd.shuffled_examples(
                    shuffle_seed, examples["user_starts"], examples["items"], examples["labels"],
                    examples["weights"], user_order=user_order, n_blocks=n_blocks)
                blocks = dict(block_bounds=block_bounds)
            scores_overflowed = _sgd.run_epoch(
                example_users=users,
                example_items=items,
                example_labels=labels,
                example_weights=weights,
                seed=seed,
                **blocks,
                **kernel_arguments,
            )
            # Drop this epoch's shuffled copies before the next are made: peak memory of fit.
            users = items = labels = weights = blocks = None
            self._check_finite(num_threads, scores_overflowed)
        return self

    def _trains_in_strata(self, kernel_arguments, n_items, n_threads, n_strata, n_examples):
        """Whether fit_partial trains in strata (``_sgd.stratified_examples``): several threads
        on a model that stays in cache, whose item rows would otherwise be shared between
        cores. Needs the identity item side (a shared tag feature would be written by every
        group), no pos2neg2 debiasing (which draws a second positive among all the user's),
        at least two page-sized chunks of items per item group (``n_strata`` groups), and on average a
        part's worth of examples (``_sgd.STRATUM_PART_EXAMPLES``) per thread for each of as
        many groups as threads (the threshold set when strata had barriers, which short rounds
        did not pay for; kept)."""
        # page-sized chunks, as when this rule was measured (the layout's chunks may be smaller)
        chunks = -(-n_items // _sgd.stratum_chunk_items(self.no_components))
        return (
            kernel_arguments["item_features"] is None
            and n_examples >= _sgd.STRATUM_PART_EXAMPLES * n_threads * n_threads
            and self._effective_debias() != "pos2neg2"
            and chunks >= 2 * n_strata
            and _sgd.small_enough_for_strata(kernel_arguments["user_parameters"], kernel_arguments["item_parameters"])
        )

    def _effective_debias(self):
        """``debias``, or None when ``debias_weight`` is 0: a regulariser of weight 0 is none, but
        pos2neg2 still stepped its second positive and negative (adadelta's state and the L2
        penalty moved them: up to 0.69 from the model without it)."""
        return self.debias if self.debias_weight else None

    def _check_epochs(self, epochs):
        if not is_integer(epochs):
            raise TypeError(f"epochs must be an integer, got {epochs!r}")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        return int(epochs)

    @staticmethod
    def _check_num_threads(num_threads):
        global _OPENMP_STARTED
        num_threads = check_positive_int(num_threads, "num_threads", MAX_THREADS)
        if num_threads > 1 and not _sgd.openmp_enabled():
            warnings.warn(
                f"num_threads={num_threads} was asked for but fastrank was built without OpenMP; "
                "running on one thread",
                RuntimeWarning,
                stacklevel=3,
            )
        elif num_threads > 1 and _FORKED_AFTER_OPENMP:
            warnings.warn(
                f"num_threads={num_threads} was asked for in a process forked after fastrank ran threads: "
                "OpenMP (libgomp) cannot start threads there and would hang, so this call runs on one "
                "thread. Start worker processes with multiprocessing's 'spawn' or 'forkserver' method.",
                RuntimeWarning,
                stacklevel=3,
            )
            return 1
        elif num_threads > 1:
            _OPENMP_STARTED = True
        return num_threads

    def _fit_features(self, features, n_rows, name):
        """Validate a feature matrix given to fit/fit_partial; an identity matrix becomes None."""
        csr = check_features(features, n_rows, name)
        if csr is not None and is_identity_pattern(csr) and csr.shape[1] == n_rows:
            return None
        return csr

    def _check_compatible(self, n_users, n_items, n_user_features, n_item_features):
        if self.learning_schedule != self._fitted_schedule:
            raise ValueError(
                f"learning_schedule changed from {self._fitted_schedule!r} to {self.learning_schedule!r} "
                "since the model was fitted; call fit to start again"
            )
        if self.no_components != self._fitted_components:
            raise ValueError(
                f"no_components changed from {self._fitted_components} to {self.no_components} "
                "since the model was fitted; call fit to start again"
            )
        if n_users < self._n_users:
            raise ValueError(f"interactions has {n_users} users but the model already has {self._n_users}")
        if n_items < self._n_items:
            raise ValueError(f"interactions has {n_items} items but the model already has {self._n_items}")
        for side, count in (("user", n_user_features), ("item", n_item_features)):
            existing = getattr(self, f"{side}_embeddings").shape[0]
            if count < existing:
                raise ValueError(
                    f"{side}_features has {count} columns but the model was trained with {existing} "
                    f"{side} features; pass at least as many"
                )

    def _training_examples(self, interactions, weights):
        """The example arrays the kernels visit, sorted by user (``user_starts`` is their row
        pointer: the examples themselves carry no user array)."""
        items = interactions.indices
        labels = interactions.data
        user_starts = interactions.indptr
        if labels.min() > 0:  # the usual implicit-feedback case: every entry is a positive
            positive_indptr, positive_indices = interactions.indptr, interactions.indices
        else:
            positive = labels > 0
            # positives before each row start: the row pointer of the positives
            positives_before = np.zeros(len(labels) + 1, dtype=np.int32)
            np.cumsum(positive, out=positives_before[1:])
            positive_indptr = positives_before[interactions.indptr]
            positive_indices = interactions.indices[positive]
            if self.loss != "logistic":
                if not positive.any():
                    raise ValueError(f"interactions has no positive (> 0) entries to train loss={self.loss!r} on")
                items, labels = positive_indices, labels[positive]
                weights = None if weights is None else weights[positive]
                user_starts = positive_indptr
        return {
            "items": np.ascontiguousarray(items, dtype=np.int32),
            # only the logistic loss reads the values; the ranking losses see positives only
            "labels": np.ascontiguousarray(labels, dtype=np.float32) if self.loss == "logistic" else None,
            "weights": None if weights is None else np.ascontiguousarray(weights, dtype=np.float32),
            "positive_indptr": np.ascontiguousarray(positive_indptr, dtype=np.int32),
            "positive_indices": np.ascontiguousarray(positive_indices, dtype=np.int32),
            # where each user's examples start: the logistic loss visits every interaction, the
            # ranking losses their positives
            "user_starts": np.asarray(user_starts, dtype=np.int64),
        }

    def _check_finite(self, num_threads=1, scores_overflowed=False):
        """Raise if the epoch just run diverged: a parameter became non-finite, or (the kernel's
        report) a score overflowed float32 while the parameters stayed finite, which stops
        training without a trace. A diverged model refuses every use until ``fit`` starts again
        (its parameters are garbage; a file ``save`` wrote of it would not load)."""
        names = ("user_embeddings", "user_biases", "item_embeddings", "item_biases")
        # a kernel pass over the bits, on the training threads: numpy's isfinite took the longest
        # serial step of an epoch on large models (0.9 ms of 4.5M floats, against 0.4 ms on one
        # thread), and an isfinite mask would add to the peak memory of fit
        bad = _sgd.first_nonfinite(tuple(getattr(self, name) for name in names), num_threads)
        if bad >= 0 or scores_overflowed:
            self._diverged = True
            what = (f"{names[bad]} contains non-finite values" if bad >= 0
                    else "scores overflowed float32 (parameters or feature weights too large)")
            raise ValueError(
                f"Training diverged: {what}. Lower learning_rate, raise item_alpha/user_alpha or "
                "scale the feature weights down, then call fit again."
            )

    # ------------------------------------------------------------------ prediction
    def _scoring_features(self, features, side, name, rows_are_ids=True):
        """Features for scoring: None (identity) or CSR with the model's column count.

        With ``rows_are_ids``, None is refused for a model trained with that side's features:
        its parameter rows are features (tags, ...), not users or items, and scoring them as
        ids returned tag columns as recommended items."""
        n_model_features = getattr(self, f"{side}_embeddings").shape[0]
        if features is None and rows_are_ids:
            self._check_rows_are_ids(side, name, "scoring")
        csr = check_features(features, None, name, n_columns=n_model_features)
        return csr

    def _check_rows_are_ids(self, side, name, what):
        """Raise when the model was trained with ``side``'s features (``name``): its parameter
        rows are features, and None, which means each id is its own feature, would read them as
        ids. Recorded by fit (arrays assigned by hand for scoring may have any number of rows);
        for a model from before the record, told by a row count other than the ids'."""
        n_rows = getattr(self, f"{side}_embeddings").shape[0]
        n_ids = getattr(self, f"_n_{side}s", 0)
        trained_with_features = getattr(self, f"_{side}_rows_are_features", None)
        if trained_with_features is None:
            trained_with_features = bool(n_ids) and n_rows != n_ids
        if trained_with_features:
            raise ValueError(
                f"this model has {n_rows} {side} feature rows for {n_ids} {side}s: it was trained with "
                f"{name}; pass them for {what} (None means each {side} is its own single feature)")

    def _rows_available(self, features, side):
        if features is None:
            return getattr(self, f"{side}_embeddings").shape[0]
        return features.shape[0]

    def predict(self, user_ids, item_ids, item_features=None, user_features=None, num_threads=1):
        """Score (user, item) pairs.

        Parameters
        ----------
        user_ids : int or int array of shape (n_pairs,)
            An int is broadcast to every item.
        item_ids : int array of shape (n_pairs,)
        item_features : sparse matrix of shape (n_items, n_item_features), optional
            Must have the column count the model was trained with; None means identity.
        user_features : sparse matrix of shape (n_users, n_user_features), optional
        num_threads : int, default 1
            Threads to use, 1 to 1024.

        Returns
        -------
        float32 array of shape (n_pairs,)
        """
        self._check_fitted()
        num_threads = self._check_num_threads(num_threads)
        item_ids = check_ids(item_ids, "item_ids")
        if is_integer(user_ids):
            user_ids = np.full(item_ids.shape[0], check_id_scalar(user_ids, "user_ids"), dtype=np.int32)
        user_ids = check_ids(user_ids, "user_ids")
        if user_ids.shape[0] != item_ids.shape[0]:
            raise ValueError(
                f"user_ids and item_ids must have the same length, got {user_ids.shape[0]} and {item_ids.shape[0]}"
            )
        user_features = self._scoring_features(user_features, "user", "user_features")
        item_features = self._scoring_features(item_features, "item", "item_features")
        check_id_range(user_ids, self._rows_available(user_features, "user"), "user_ids", "users")
        check_id_range(item_ids, self._rows_available(item_features, "item"), "item_ids", "items")
        scores = np.empty(user_ids.shape[0], dtype=np.float32)
        user_ids, user_rows = _rows_for_ids(user_ids, user_features)
        item_ids, item_rows = _rows_for_ids(item_ids, item_features)
        _ranking.predict_pairs(
            user_ids,
            item_ids,
            user_rows,
            # (arrays assigned by hand may be in Fortran order; read-only ones, memory maps, are taken)
            np.ascontiguousarray(self.user_embeddings),
            np.ascontiguousarray(self.user_biases),
            item_rows,
            np.ascontiguousarray(self.item_embeddings),
            np.ascontiguousarray(self.item_biases),
            scores,
            num_threads,
        )
        # scores, not the parameters, are checked: a few pairs need not scan a large model
        if not np.all(np.isfinite(scores)):
            raise ValueError("predicted scores contain NaN or infinite values: the model's parameters are not "
                             "finite (set by hand?) or feature weights are too large for float32")
        return scores

    def predict_rank(
        self,
        test_interactions,
        train_interactions=None,
        item_features=None,
        user_features=None,
        num_threads=1,
        check_intersections=True,
    ):
        """Rank of every test item among all items, per user (0 = best).

        The rank of a test entry is the number of candidate items ranked before it: items that
        score higher, and items with an equal score and a lower item id (the tie rule used
        everywhere in fastrank, so a constant model gets no credit). Items in the user's
        ``train_interactions`` row are not candidates; the other test items are.

        Parameters
        ----------
        test_interactions : sparse matrix of shape (n_users, n_items)
        train_interactions : sparse matrix of shape (n_users, n_items), optional
            Known interactions to leave out of the candidates.
        item_features, user_features : sparse matrices, optional
            As in :meth:`predict`; the feature matrices must have n_items / n_users rows.
        num_threads : int, default 1
            Threads to use, 1 to 1024.
        check_intersections : bool, default True
            Raise ``ValueError`` when train and test share an entry.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_users, n_items), float32
            Same entries as ``test_interactions``; values are 0-based ranks.
        """
        ranks, _ = self._rank_held_out(
            test_interactions, train_interactions, item_features, user_features, num_threads, check_intersections
        )
        return ranks

    def _rank_held_out(self, test_interactions, train_interactions, item_features, user_features, num_threads,
                       check_intersections, rank_cap=0):
        """predict_rank, plus the number of excluded items (train items that are not test items)
        per user, shape (n_users,). ``rank_cap`` > 0 allows ranks of at least ``rank_cap`` to be
        reported as ``rank_cap`` (exact below it; faster, enough for top-k metrics)."""
        self._check_fitted()
        num_threads = self._check_num_threads(num_threads)
        test = to_csr(test_interactions, "test_interactions", num_threads=num_threads)
        n_users, n_items = test.shape
        user_features = self._scoring_features(user_features, "user", "user_features")
        item_features = self._scoring_features(item_features, "item", "item_features")
        self._check_matrix_rows(user_features, n_users, "user", "test_interactions")
        self._check_matrix_rows(item_features, n_items, "item", "test_interactions", axis="columns")
        if train_interactions is None:
            train = sp.csr_matrix((n_users, n_items), dtype=np.float32)
            train.indptr = train.indptr.astype(np.int32)
            train.indices = train.indices.astype(np.int32)
        else:
            train = to_csr(train_interactions, "train_interactions", num_threads=num_threads)
            if train.shape != test.shape:
                raise ValueError(
                    f"train_interactions has shape {train.shape}, test_interactions has shape {test.shape}"
                )
            if check_intersections and _pattern(test).multiply(_pattern(train)).nnz > 0:
                raise ValueError("test_interactions and train_interactions share entries")
        active = np.flatnonzero(np.diff(test.indptr)).astype(np.int32)
        ranks = np.zeros(test.nnz, dtype=np.float32)
        if active.size:
            user_matrix, _ = self._scoring_matrix(user_features, "user", active)
            item_matrix, _ = self._scoring_matrix(item_features, "item", np.arange(n_items))
            active_test, active_train = test[active], train[active]
            _ranking.rank_held_out(
                user_matrix,
                item_matrix,
                active_test.indptr.astype(np.int32),
                active_test.indices.astype(np.int32),
                active_train.indptr.astype(np.int32),
                active_train.indices.astype(np.int32),
                ranks,  # rows without entries hold none, so the entries line up with test's
                num_threads,
                _ranking.block_size(active.size, n_items),
                rank_cap,
            )
        ranks = sp.csr_matrix((ranks, test.indices.copy(), test.indptr.copy()), shape=test.shape)
        # Train items that are also test items stay candidates (check_intersections=False): only
        # the others are excluded.
        shared = np.diff(_pattern(test).multiply(_pattern(train)).tocsr().indptr) if train.nnz else 0
        return ranks, np.diff(train.indptr) - shared

    def _scoring_matrix(self, features, side, rows):
        """Augmented representations for blocked scoring (``_ranking``), and the biases of ``rows``.

        Users get ``[repr, 1]`` and items ``[repr, bias]``, so that a product of rows is
        ``user_repr . item_repr + item_bias``; the user bias, constant per user, is returned
        separately.

        Returns
        -------
        matrix : float32 array of shape (len(rows), no_components + 1), C-contiguous
        biases : float32 array of shape (len(rows),)
        """
        embeddings = getattr(self, f"{side}_embeddings")
        biases = getattr(self, f"{side}_biases")
        if features is None:
            repr_embeddings, repr_biases = embeddings[rows], biases[rows]
        else:
            selected = features[rows]
            repr_embeddings, repr_biases = selected @ embeddings, selected @ biases
        matrix = np.empty((len(rows), embeddings.shape[1] + 1), dtype=np.float32)
        matrix[:, :-1] = repr_embeddings
        matrix[:, -1] = 1.0 if side == "user" else repr_biases
        # NaN scores have no rank: they made metrics leave [0, 1] (precision 2, AUC 1.5)
        _check_finite_representations(matrix, side)
        return matrix, np.asarray(repr_biases, dtype=np.float32)

    def _check_matrix_rows(self, features, needed, side, matrix_name, axis="rows"):
        available = self._rows_available(features, side)
        if features is not None and features.shape[0] != needed:
            raise ValueError(
                f"{side}_features has {features.shape[0]} rows but {matrix_name} has {needed} {side}s ({axis})"
            )
        if features is None and needed > available:
            raise ValueError(f"{matrix_name} has {needed} {side}s ({axis}) but the model knows only {available}")

    def _representations(self, features, side, n_rows=None):
        """(biases (n_rows,), embeddings (n_rows, no_components)) float32, C-contiguous."""
        embeddings = getattr(self, f"{side}_embeddings")
        biases = getattr(self, f"{side}_biases")
        if features is None:
            rows = embeddings.shape[0] if n_rows is None else n_rows
            return np.array(biases[:rows], dtype=np.float32), np.array(embeddings[:rows], dtype=np.float32)
        return (
            np.ascontiguousarray(features @ biases, dtype=np.float32),
            np.ascontiguousarray(features @ embeddings, dtype=np.float32),
        )

    # ------------------------------------------------------------------ recommendation
    def recommend(self, user_ids, k=10, user_features=None, item_features=None, filter_interactions=None,
                  items=None, num_threads=1):
        """Top-``k`` items for each user, best first, by partial selection (no full sort).

        Parameters
        ----------
        user_ids : int or int array of shape (n_queries,)
            Rows of ``user_features`` (or user ids when it is None).
        k : int, default 10
        user_features : sparse matrix of shape (n_users, n_user_features), optional
            With the model's column count. Rows beyond the users seen in training describe new
            users by their features alone (cold start).
        item_features : sparse matrix of shape (n_items, n_item_features), optional
            Rows are the candidate items; extra rows describe new items (cold start).
        filter_interactions : sparse matrix of shape (n_user_rows, n_items), optional
            Items to leave out per user, row ``u`` for user ``u`` (typically the seen items).
        items : int array of shape (n_candidates,), optional
            Restrict the candidates to these item ids.
        num_threads : int, default 1
            Threads to use, 1 to 1024.

        Returns
        -------
        item_ids : int32 array of shape (n_queries, min(k, n_candidates))
            Sorted by descending score, ties by ascending item id; -1 pads rows left with fewer
            candidates (after ``filter_interactions``). ``n_candidates`` is ``len(items)`` (its
            distinct ids) or the number of items.
        scores : float32 array of shape (n_queries, min(k, n_candidates))
            :meth:`predict` of the pairs up to float32 rounding (the two kernels add in
            different orders: differences of a few 1e-7); -inf where padded.
        """
        self._check_fitted()
        num_threads = self._check_num_threads(num_threads)
        k = check_positive_int(k, "k")
        user_ids = self._query_ids(user_ids, "user_ids")
        user_features = self._scoring_features(user_features, "user", "user_features")
        item_features = self._scoring_features(item_features, "item", "item_features")
        check_id_range(user_ids, self._rows_available(user_features, "user"), "user_ids", "users")
        n_items = self._rows_available(item_features, "item")
        if items is None:
            candidates = np.arange(n_items, dtype=np.int32)
        else:
            candidates = np.unique(check_ids(items, "items"))
            check_id_range(candidates, n_items, "items", "items")
        if filter_interactions is None:
            exclude_indptr = np.zeros(user_ids.shape[0] + 1, dtype=np.int32)
            exclude_indices = np.zeros(0, dtype=np.int32)
        else:
            seen = to_csr(filter_interactions, "filter_interactions", num_threads=num_threads)
            if seen.shape[1] != n_items:
                raise ValueError(f"filter_interactions has {seen.shape[1]} columns but there are {n_items} items")
            check_id_range(user_ids, seen.shape[0], "user_ids", "rows in filter_interactions")
            seen = seen[user_ids]
            exclude_indptr, exclude_indices = seen.indptr.astype(np.int32), seen.indices.astype(np.int32)
        query_matrix, user_biases = self._scoring_matrix(user_features, "user", user_ids)
        candidate_matrix, _ = self._scoring_matrix(item_features, "item", candidates)
        ids, scores = self._select_top_k(query_matrix, candidate_matrix, candidates, exclude_indptr,
                                         exclude_indices, n_items, k, num_threads)
        scores += user_biases[:, None]  # -inf padding stays -inf
        return ids, scores

    def similar_items(self, item_ids, k=10, item_features=None, num_threads=1):
        """The ``k`` items most similar to each query item by cosine similarity of representations.

        Parameters
        ----------
        item_ids : int or int array of shape (n_queries,)
        k : int, default 10
        item_features : sparse matrix of shape (n_items, n_item_features), optional
        num_threads : int, default 1
            Threads to use, 1 to 1024.

        Returns
        -------
        item_ids : int32 array of shape (n_queries, min(k, n_items))
            Most similar first, the query item itself excluded; -1 pads.
        similarities : float32 array of shape (n_queries, min(k, n_items))
            Cosine similarities in [-1, 1]; -inf where padded.
        """
        return self._similar("item", item_ids, k, item_features, num_threads)

    def similar_users(self, user_ids, k=10, user_features=None, num_threads=1):
        """The ``k`` users most similar to each query user by cosine similarity of representations.

        Parameters
        ----------
        user_ids : int or int array of shape (n_queries,)
        k : int, default 10
        user_features : sparse matrix of shape (n_users, n_user_features), optional
        num_threads : int, default 1
            Threads to use, 1 to 1024.

        Returns
        -------
        user_ids : int32 array of shape (n_queries, min(k, n_users))
            Most similar first, the query user itself excluded; -1 pads.
        similarities : float32 array of shape (n_queries, min(k, n_users))
            Cosine similarities in [-1, 1]; -inf where padded.
        """
        return self._similar("user", user_ids, k, user_features, num_threads)

    def _similar(self, side, query_ids, k, features, num_threads):
        self._check_fitted()
        num_threads = self._check_num_threads(num_threads)
        k = check_positive_int(k, "k")
        query_ids = self._query_ids(query_ids, f"{side}_ids")
        features = self._scoring_features(features, side, f"{side}_features")
        n_rows = self._rows_available(features, side)
        check_id_range(query_ids, n_rows, f"{side}_ids", f"{side}s")
        _, embeddings = self._representations(features, side)
        _check_finite_representations(embeddings, side)  # a NaN row would look like a zero vector
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        # a zero vector is similar to nothing: its row stays zero
        unit = np.ascontiguousarray(np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0))
        exclude_indptr = np.arange(query_ids.shape[0] + 1, dtype=np.int32)
        candidates = np.arange(n_rows, dtype=np.int32)
        return self._select_top_k(np.ascontiguousarray(unit[query_ids]), unit, candidates, exclude_indptr,
                                  query_ids, n_rows, k, num_threads)

    @staticmethod
    def _query_ids(ids, name):
        if is_integer(ids):
            return np.array([check_id_scalar(ids, name)], dtype=np.int32)
        return check_ids(ids, name)

    @staticmethod
    def _select_top_k(query_matrix, candidate_matrix, candidate_ids, exclude_indptr, exclude_indices, n_ids, k,
                      num_threads):
        n_queries = query_matrix.shape[0]
        # no wider than the candidates: a k of 2**31 - 2 had the padding fill tens of GiB (the
        # kernel wrote it all, and the process was killed for memory)
        k = min(k, candidate_matrix.shape[0])
        ids = np.empty((n_queries, k), dtype=np.int32)
        scores = np.empty((n_queries, k), dtype=np.float32)
        _ranking.top_k(
            query_matrix,
            np.ascontiguousarray(candidate_matrix),
            np.ascontiguousarray(candidate_ids, dtype=np.int32),
            exclude_indptr,
            np.ascontiguousarray(exclude_indices, dtype=np.int32),
            n_ids,
            k,
            ids,
            scores,
            num_threads,
            _ranking.block_size(n_queries, candidate_matrix.shape[0]),
        )
        return ids, scores

    def get_user_representations(self, features=None):
        """Biases and embeddings of users (as sums of their features).

        Parameters
        ----------
        features : sparse matrix of shape (n_users, n_user_features), optional
            None returns the per-feature parameters (identity).

        Returns
        -------
        (biases, embeddings) : float32 arrays of shapes (n_users,) and (n_users, no_components)
        """
        self._check_fitted()
        return self._representations(self._scoring_features(features, "user", "features", rows_are_ids=False), "user")

    def get_item_representations(self, features=None):
        """Biases and embeddings of items (as sums of their features).

        Parameters
        ----------
        features : sparse matrix of shape (n_items, n_item_features), optional
            None returns the per-feature parameters (identity).

        Returns
        -------
        (biases, embeddings) : float32 arrays of shapes (n_items,) and (n_items, no_components)
        """
        self._check_fitted()
        return self._representations(self._scoring_features(features, "item", "features", rows_are_ids=False), "item")

    # ------------------------------------------------------------------ persistence
    def save(self, path, extra=None):
        """Write the model to one ``.npz`` file that loads without pickle.

        The file holds the hyperparameters, every parameter array, the optimizer state, the
        random generator state and a format version. It is written atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Destination; written exactly at this path (no suffix is added).
        extra : dict of str to numpy array, optional
            Application data stored alongside (e.g. id mappings, feature matrices): numeric,
            boolean or string arrays only (no objects), read back by :meth:`load_extra`.

        A ``fit`` or ``fit_partial`` running on this model in another thread finishes first.
        """
        with _training_lock(self):
            self._save(path, extra)

    def _save(self, path, extra):
        # a file that load would refuse is not written: parameters set since fit are checked too
        self._check_fitted(training=True)
        self._check_params()
        problem = self._state_value_problem()
        if problem is not None:
            raise ValueError(f"cannot save this model: {problem} (load would refuse the file)")
        if extra is not None and not isinstance(extra, Mapping):
            raise TypeError(f"extra must be a dict of str to numpy arrays, got {type(extra).__name__}")
        params = self.get_params()
        if not (params["random_state"] is None or is_integer(params["random_state"])):
            params["random_state"] = None  # a generator object is not stored; its drawn state is
        params = {name: _json_number(value) for name, value in params.items()}
        metadata = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "fastrank_version": _version(),
            "params": params,
            "n_users": self._n_users,
            "n_items": self._n_items,
            "fitted_schedule": self._fitted_schedule,
            "fitted_components": self._fitted_components,
            "rng_state": self._rng.bit_generator.state,
            # (absent from older files: load then tells from the row counts)
            "user_rows_are_features": getattr(self, "_user_rows_are_features", None),
            "item_rows_are_features": getattr(self, "_item_rows_are_features", None),
        }
        arrays = {"metadata": np.array(json.dumps(metadata))}
        for name, value in (extra or {}).items():
            value = np.asarray(value)
            if not isinstance(name, str) or value.dtype.kind not in "biufUS":
                raise TypeError(f"extra[{name!r}] must be a numeric, boolean or string array, got {value.dtype}")
            if len(f"extra/{name}.npy".encode("utf-8", "surrogatepass")) > MAX_ARCHIVE_NAME_BYTES:
                raise ValueError(f"extra key {name[:40]!r}... is too long: a zip member name holds at most "
                                 f"{MAX_ARCHIVE_NAME_BYTES} bytes")
            arrays[f"extra/{name}"] = value
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS:
                value = getattr(self, self._array_attribute(side, array))
                if value is not None:
                    arrays[f"{side}_{array}"] = value
        # written through a link to its target, as open() would, and never over a device, pipe or
        # directory: os.replace would swap the node itself for the file (--output /dev/null
        # replaced /dev/null)
        path = os.path.realpath(os.fspath(path))
        if os.path.lexists(path) and not os.path.isfile(path):
            raise ValueError(f"cannot save to {path}: it exists and is not a regular file")
        directory = os.path.dirname(path)
        # The temporary file is named before it is created, inside the try: an interrupt in
        # mkstemp (after its open) left .tmp files and descriptors behind. Created with mode 0666
        # less the umask, the permissions a plain open gives.
        temporary = handle = stream = None
        try:
            while True:
                temporary = os.path.join(directory, f".fastrank-{secrets.token_hex(8)}.tmp")
                try:
                    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                                     0o666)
                    break
                except FileExistsError:  # (another file by that name: not ours to remove)
                    temporary = None
            stream = os.fdopen(handle, "wb")  # owns the descriptor from here
            with stream:
                np.savez(stream, **arrays)
            os.replace(temporary, path)
        except BaseException:
            try:
                if stream is not None:
                    stream.close()
                elif handle is not None:
                    os.close(handle)
            except (OSError, ValueError):
                pass
            if temporary is not None and os.path.exists(temporary):
                os.remove(temporary)
            raise

    @staticmethod
    def load_extra(path):
        """The ``extra`` arrays stored by :meth:`save`, as a dict (empty if none).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        dict of str to numpy array
            Each array as given to :meth:`save` (its dtype and shape kept).

        Raises
        ------
        ValueError
            If the file is not a readable fastrank model file.
        """
        return _load_extra(path)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save` (no pickle is executed).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        FastRank
            The fitted model, with its parameters, optimizer state and random state: scoring
            gives what the saved model gave, and ``fit_partial`` continues its training.

        Raises
        ------
        ValueError
            If the file is truncated, not a fastrank model, or internally inconsistent.
        """
        contents = _read_model_file(path, lambda name: not name.startswith("extra/"))
        try:
            metadata = json.loads(str(contents.pop("metadata")))
        except (TypeError, ValueError, RecursionError) as error:  # (RecursionError: nested too deeply)
            raise ValueError(f"{path} has unreadable metadata: {error}") from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
            raise ValueError(f"{path} is not a fastrank model file")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has model format version {metadata.get('format_version')}; "
                f"this fastrank reads version {FORMAT_VERSION}"
            )
        try:
            model = cls(**metadata["params"])
            model._check_params()
            model._reset_state()
            for key, least in (("n_users", 0), ("n_items", 0), ("fitted_components", 1)):
                if not is_integer(metadata[key]) or metadata[key] < least:
                    raise ValueError(f"{key} must be an integer >= {least}, got {metadata[key]!r}")
            model._n_users = int(metadata["n_users"])
            model._n_items = int(metadata["n_items"])
            if not isinstance(metadata["fitted_schedule"], str):
                raise TypeError(f"fitted_schedule must be a string, got {metadata['fitted_schedule']!r}")
            model._fitted_schedule = metadata["fitted_schedule"]
            model._fitted_components = int(metadata["fitted_components"])
            model._rng = np.random.default_rng()
            # checked here: numpy < 2 took a negative PCG64 state and wrapped it around
            for key in ("state", "inc"):
                value = metadata["rng_state"]["state"][key]
                if not is_integer(value) or not 0 <= value < 2**128:
                    raise ValueError(f"rng_state {key} must be an integer in [0, 2**128), got {value!r}")
            model._rng.bit_generator.state = metadata["rng_state"]
            for side in ("user", "item"):
                flag = metadata.get(f"{side}_rows_are_features")
                if flag is not None and not isinstance(flag, bool):
                    raise TypeError(f"{side}_rows_are_features must be true, false or null, got {flag!r}")
                setattr(model, f"_{side}_rows_are_features", flag)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{path} has invalid model metadata: {error}") from None
        stored = _STATE_ARRAYS.get(model._fitted_schedule)
        if stored is None:
            raise ValueError(f"{path} has an unknown learning schedule {model._fitted_schedule!r}")
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS[:stored]:
                key = f"{side}_{array}"
                if key not in contents:
                    raise ValueError(f"{path} is missing the array {key}")
                setattr(model, model._array_attribute(side, array), contents[key])
        try:
            model._check_parameter_arrays(training=True)  # dtypes and shapes, as for arrays set by hand
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
        problem = model._state_value_problem()
        if problem is not None:
            raise ValueError(f"{path}: {problem}")
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS[:stored]:
                name = model._array_attribute(side, array)
                setattr(model, name, cache_aligned(getattr(model, name)))
        return model

    def _state_value_problem(self):
        """What :meth:`load` would refuse in the values of the parameter arrays and optimizer
        state (checked for dtypes and shapes already), as a message; None if nothing."""
        for side in ("user", "item"):
            for array in _SIDE_ARRAYS[:_STATE_ARRAYS[self._fitted_schedule]]:
                value = getattr(self, self._array_attribute(side, array))
                if not np.all(np.isfinite(value)):
                    return f"array {side}_{array} contains non-finite values"
                # adagrad divides by the root of its accumulators (at least initial_accumulator
                # > 0); adadelta's running averages of squares are never negative
                if array != "embeddings" and array != "biases" and (
                        np.any(value <= 0) if self._fitted_schedule == "adagrad" else np.any(value < 0)):
                    return f"array {side}_{array} holds values impossible for {self._fitted_schedule} optimizer state"
        return None


def _json_number(value):
    """A parameter value as JSON can write it: numpy scalars and other numbers (``Fraction``,
    ``numpy.longdouble``), all valid parameters, become Python ints and floats."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _read_model_file(path, wanted):
    """The arrays of a model file written by :meth:`FastRank.save` whose names satisfy ``wanted``
    (the metadata always), by name; ``ValueError`` unless ``path`` is such a file."""
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)
    try:
        with open(os.fspath(path), "rb") as handle:
            head = handle.read(6)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ValueError(f"{path} is not a readable fastrank model file: {error}") from None
    # neither a zip nor a .npy: numpy would suggest loading it as a pickle, which this format never holds
    if not head.startswith((b"PK", b"\x93NUMPY")):
        raise ValueError(f"{path} is not a fastrank model file (FastRank.save writes an .npz archive)")
    try:
        loaded = np.load(os.fspath(path), allow_pickle=False)
    except FileNotFoundError:
        raise
    except unreadable as error:
        raise ValueError(f"{path} is not a readable fastrank model file: {error}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a fastrank model file (it holds one array, not an .npz archive)")
    try:
        with loaded as archive:
            names = [name for name in archive.files if name == "metadata" or wanted(name)]
            contents = {name: archive[name] for name in names}
    except unreadable as error:
        raise ValueError(f"{path} is not a readable fastrank model file: {error}") from None
    if "metadata" not in contents:
        raise ValueError(f"{path} is not a fastrank model file (no metadata)")
    return contents


def _load_extra(path):
    contents = _read_model_file(path, lambda name: name.startswith("extra/"))
    return {name[len("extra/"):]: value for name, value in contents.items() if name.startswith("extra/")}


def _rows_for_ids(ids, features):
    """The feature rows a scoring kernel needs for ``ids``, packed, and the ids to use with them.

    With few ids only their rows are packed (and the ids renumbered into them), so a call that
    scores a handful of pairs does not copy a large feature matrix; with many, all rows are.

    Parameters
    ----------
    ids : int32 array of shape (n,)
        Row ids, already checked against ``features``.
    features : canonical CSR matrix or None (identity)

    Returns
    -------
    ids : int32 array of shape (n,)
    rows : None or the :func:`packed_feature_rows` of the rows ``ids`` index
    """
    if features is None:
        return ids, None
    if 4 * ids.shape[0] >= features.shape[0]:
        return ids, packed_feature_rows(features)
    used, positions = np.unique(ids, return_inverse=True)
    return positions.astype(np.int32).reshape(ids.shape), packed_feature_rows(features[used])


def _pattern(csr):
    """Binary copy of a CSR's sparsity pattern (explicit zeros count as entries)."""
    return sp.csr_matrix((np.ones(csr.nnz, dtype=np.int8), csr.indices, csr.indptr), shape=csr.shape)


def _version():
    from fastrank._version import __version__

    return __version__
