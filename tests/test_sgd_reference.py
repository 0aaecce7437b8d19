"""The Cython SGD kernels against a small numpy reference of the same math.

Each test builds a tiny model with ``fit(..., epochs=0)`` (parameters initialised, no training),
replaces the parameters (and, for a "warm" model, the optimizer state) with random values,
runs the reference below on float64 copies, then runs one real epoch with ``num_threads=1`` and
the sampler scripted through the ``_script`` test hook, and compares every parameter and
optimizer-state array.

The order in which an epoch visits its examples is ``fastrank._sgd.shuffled_order(seed, n_examples)``
with ``seed = model._rng.integers(0, 2**63)`` drawn just before the kernel call; the tests replay
it on a copy of the generator so that the reference visits the examples (and consumes the
scripted draws) in the same order.
"""

import copy
import math

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank
from fastrank._sgd import shuffled_order

N_COMPONENTS = 11  # one unrolled block of 8 in the kernel's dot product plus a remainder of 3
# With AVX2, feature sums of a multiple of 32 components keep 32 columns in registers and score
# the sum from them; other widths take a generic loop. Some tests run both.
BLOCKED_COMPONENTS = 64
LEARNING_RATE = 0.1
RHO = 0.9
EPSILON = 1e-4
USER_ALPHA = 0.05
ITEM_ALPHA = 0.02
MAX_LOSS = 10.0  # WARP's rank weight is clipped here
BPR_TRIES = 100  # BPR gives an example up after this many draws that all hit positives
# A scripted score comparison must not be decided by float32 rounding.
DECISION_MARGIN = 1e-3

LOSSES = ("logistic", "bpr", "warp", "warp-kos")
SCHEDULES = ("adagrad", "adadelta", "sgd")


# ---------------------------------------------------------------------------------------------
# The reference
# ---------------------------------------------------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def adagrad(param, acc, g, learning_rate):
    """Adagrad with the accumulator *before* this gradient:
    ``param -= lr * g / sqrt(acc)``, then ``acc += g**2``."""
    return param - learning_rate * g / np.sqrt(acc), acc + g * g


def adadelta(param, e_dx2, e_g2, g, rho, epsilon):
    """Adadelta (Zeiler 2012)::

        E_g2  = rho * E_g2 + (1 - rho) * g**2
        step  = sqrt(E_dx2 + eps) / sqrt(E_g2 + eps) * g
        E_dx2 = rho * E_dx2 + (1 - rho) * step**2
        param -= step

    The model's ``*_acc`` arrays hold E_dx2 and its ``*_momentum`` arrays hold E_g2.
    """
    e_g2 = rho * e_g2 + (1 - rho) * g * g
    step = np.sqrt(e_dx2 + epsilon) / np.sqrt(e_g2 + epsilon) * g
    e_dx2 = rho * e_dx2 + (1 - rho) * step * step
    return param - step, e_dx2, e_g2


class Side:
    """Users or items: per-feature parameters, optimizer state and the feature matrix.

    A row (user or item) is a list of (feature, weight) pairs: its row of the feature matrix, or
    ``[(row, 1)]`` without one. Its representation is ``sum(weight * embedding[feature])`` and
    its bias ``sum(weight * bias[feature])``.
    """

    def __init__(self, arrays, features, alpha, hyper):
        self.p = arrays  # float64 copies, keyed embeddings/biases/acc/bias_acc/momentum/bias_momentum
        self.features = features
        self.alpha = alpha
        self.hyper = hyper

    def row(self, r):
        if self.features is None:
            return [(r, 1.0)]
        start, end = self.features.indptr[r], self.features.indptr[r + 1]
        return list(zip(self.features.indices[start:end], self.features.data[start:end].astype(np.float64)))

    def representation(self, r):
        embedding = np.zeros(self.p["embeddings"].shape[1])
        bias = 0.0
        for feature, weight in self.row(r):
            embedding += weight * self.p["embeddings"][feature]
            bias += weight * self.p["biases"][feature]
        return embedding, bias

    def update(self, r, gradient, bias_gradient=None):
        """Gradient step on a row's representation, spread over the row's features.

        Feature ``f`` with weight ``w`` receives ``g = w * gradient + alpha * param[f]`` (L2 on
        the touched features only) and one adagrad/adadelta step; features are updated one after
        the other, each using the current value of its parameters. ``bias_gradient=None`` leaves
        the biases (and their optimizer state) alone.
        """
        for feature, weight in self.row(r):
            self._step(feature, "embeddings", "acc", "momentum", weight * gradient)
            if bias_gradient is not None:
                self._step(feature, "biases", "bias_acc", "bias_momentum", weight * bias_gradient)

    def _step(self, feature, param_name, acc_name, momentum_name, weighted_gradient):
        param, acc = self.p[param_name], self.p.get(acc_name)
        g = weighted_gradient + self.alpha * param[feature]
        if self.hyper["schedule"] == "adagrad":
            param[feature], acc[feature] = adagrad(param[feature], acc[feature], g, self.hyper["learning_rate"])
        elif self.hyper["schedule"] == "sgd":
            param[feature] = param[feature] - self.hyper["learning_rate"] * g
        else:
            momentum = self.p[momentum_name]
            param[feature], acc[feature], momentum[feature] = adadelta(
                param[feature], acc[feature], momentum[feature], g, self.hyper["rho"], self.hyper["epsilon"]
            )


class ScriptedSampler:
    """The kernel's sampler under the test hook: the j-th draw below ``upper`` is
    ``script[j] % upper``. Running out is an error: every draw of a test must be scripted."""

    def __init__(self, script):
        self.script = list(script)
        self.position = 0

    def below(self, upper):
        assert self.position < len(self.script), "the script is too short for this scenario"
        value = self.script[self.position] % upper
        self.position += 1
        return value


class Reference:
    """One SGD epoch of every loss in plain numpy. ``trace`` records what each step did.

    Scores are ``user_repr . item_repr + user_bias + item_bias``.

    * logistic: ``loss = w * (sigmoid(score) - y)`` with ``y = 1`` for values > 0, else 0;
      user gradient ``loss * item_repr``, item gradient ``loss * user_repr``, both biases ``loss``.
    * pairwise (BPR, WARP) with a loss ``L``, the gradient of ``L * (score_neg - score_pos)``:
      user ``L * (neg_repr - pos_repr)``, positive item ``-L * user_repr`` (bias ``-L``), negative
      item ``+L * user_repr`` (bias ``+L``); the user bias cancels and is not touched. All
      gradients come from the representations before the step; the user, then the positive
      item, then the negative item are updated.
    * BPR: a negative is drawn uniformly, redrawn while it is one of the user's positives (up to
      100 draws, then the example is skipped); ``L = w * sigmoid(score_neg - score_pos)``.
    * WARP: negatives are drawn (at most ``max_sampled``) until one violates the margin
      (``score_neg > score_pos - 1``) and is not a positive of the user; a draw that hits a
      positive is skipped but counted. With ``draws`` the number of draws so far,
      ``L = min(w * log(max(1, floor((n_items - 1) / draws))), 10)``. No violator: no update.
    * WARP-KOS: per visit of a user, ``min(n, count)`` positives are drawn (indices into the
      user's sorted positive items, with replacement), ranked by score (ties by item id), and the
      ``min(k, drawn)``-th best is the positive of a WARP step with weight 1.
    """

    def __init__(self, loss, before, user_features, item_features, model, script):
        self.loss = loss
        hyper = dict(
            schedule=model.learning_schedule,
            learning_rate=model.learning_rate,
            rho=model.rho,
            epsilon=model.epsilon,
        )
        self.users = Side(side_arrays(before, "user"), user_features, model.user_alpha, hyper)
        self.items = Side(side_arrays(before, "item"), item_features, model.item_alpha, hyper)
        self.max_sampled, self.k, self.n = model.max_sampled, model.k, model.n
        self.sampler = ScriptedSampler(script)
        self.trace = []

    def score(self, user, item):
        (u, bu), (i, bi) = self.users.representation(user), self.items.representation(item)
        return float(u @ i + bu + bi)

    def epoch(self, interactions, weights, order):
        """Visit the examples (the entries of ``interactions`` in row-major order, only the
        positive ones for the ranking losses) in ``order``."""
        self.n_items = interactions.shape[1]
        coo = interactions.tocoo()
        examples = list(zip(coo.row, coo.col, coo.data, weights))
        self.positives = {
            user: sorted(item for u, item, value, _ in examples if u == user and value > 0)
            for user in range(interactions.shape[0])
        }
        if self.loss != "logistic":
            examples = [example for example in examples if example[2] > 0]
        assert len(examples) == len(order)
        for index in order:
            user, item, value, weight = examples[index]
            if self.loss == "logistic":
                self.logistic(user, item, value, weight)
            elif self.loss == "bpr":
                self.bpr(user, item, weight)
            elif self.loss == "warp":
                self.warp(user, item, weight)
            else:
                self.warp_kos(user)
        assert self.sampler.position == len(self.sampler.script), "the script has unused draws"

    def logistic(self, user, item, value, weight):
        (u, _), (i, _) = self.users.representation(user), self.items.representation(item)
        label = 1.0 if value > 0 else 0.0
        loss = weight * (sigmoid(self.score(user, item)) - label)
        self.users.update(user, loss * i, loss)
        self.items.update(item, loss * u, loss)
        self.trace.append(("logistic", label))

    def pairwise(self, user, positive, negative, loss):
        u, _ = self.users.representation(user)
        i_pos, _ = self.items.representation(positive)
        i_neg, _ = self.items.representation(negative)
        self.users.update(user, loss * (i_neg - i_pos))
        self.items.update(positive, -loss * u, -loss)
        self.items.update(negative, loss * u, loss)

    def bpr(self, user, positive, weight):
        for _ in range(BPR_TRIES):
            negative = self.sampler.below(self.n_items)
            if negative not in self.positives[user]:
                break
            self.trace.append(("redraw", negative))
        else:
            self.trace.append(("gave up",))
            return
        loss = weight * sigmoid(self.score(user, negative) - self.score(user, positive))
        self.pairwise(user, positive, negative, loss)
        self.trace.append(("update", negative))

    def warp(self, user, positive, weight):
        positive_score = self.score(user, positive)
        for draws in range(1, self.max_sampled + 1):
            negative = self.sampler.below(self.n_items)
            violation = self.score(user, negative) - (positive_score - 1.0)
            assert abs(violation) > DECISION_MARGIN, "a margin decision too close to call"
            if violation <= 0:
                self.trace.append(("below margin", negative))
                continue
            if negative in self.positives[user]:
                self.trace.append(("positive", negative))
                continue
            loss = min(weight * math.log(max(1, (self.n_items - 1) // draws)), MAX_LOSS)
            self.pairwise(user, positive, negative, loss)
            self.trace.append(("update", negative, draws))
            return
        self.trace.append(("no violator",))

    def warp_kos(self, user):
        positives = self.positives[user]
        if not positives:
            return
        picks = [positives[self.sampler.below(len(positives))] for _ in range(min(self.n, len(positives)))]
        scores = {item: self.score(user, item) for item in picks}
        ranked = sorted(set(picks), key=lambda item: (-scores[item], item))
        for better, worse in zip(ranked, ranked[1:]):
            assert scores[better] - scores[worse] > DECISION_MARGIN, "a ranking too close to call"
        ranked = sorted(picks, key=lambda item: (-scores[item], item))
        chosen = ranked[min(self.k, len(picks)) - 1]
        self.trace.append(("kos", chosen))
        self.warp(user, chosen, 1.0)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

SIDE_ARRAYS = {
    "embeddings": "{side}_embeddings",
    "biases": "{side}_biases",
    "acc": "_{side}_embedding_acc",
    "bias_acc": "_{side}_bias_acc",
    "momentum": "_{side}_embedding_momentum",
    "bias_momentum": "_{side}_bias_momentum",
}


def attribute_names(model):
    """Every parameter and optimizer-state attribute of the model's schedule."""
    keys = list(SIDE_ARRAYS)[: {"sgd": 2, "adagrad": 4, "adadelta": 6}[model.learning_schedule]]
    return [SIDE_ARRAYS[key].format(side=side) for side in ("user", "item") for key in keys]


def snapshot(model):
    return {name: getattr(model, name).copy() for name in attribute_names(model)}


def side_arrays(state, side):
    """float64 copies of one side's arrays, keyed as in ``Side``."""
    return {
        key: state[pattern.format(side=side)].astype(np.float64)
        for key, pattern in SIDE_ARRAYS.items()
        if pattern.format(side=side) in state
    }


def weighted_features(n_rows, n_tags, seed):
    """(n_rows, n_rows + n_tags) float32 CSR: every row has its own feature with a weight in
    [0.5, 1.5] and one or two shared "tag" features with weights in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    rows, cols, values = [], [], []
    for r in range(n_rows):
        tags = {r % n_tags} | ({(r + 1) % n_tags} if r % 2 == 0 else set())
        for column, weight in [(r, rng.uniform(0.5, 1.5))] + [(n_rows + t, rng.uniform(0.2, 0.8)) for t in tags]:
            rows.append(r)
            cols.append(column)
            values.append(weight)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_rows + n_tags), dtype=np.float32)


def make_model(loss, schedule, interactions, features, sample_weight=None, warm=False, seed=0, scale=0.4, **params):
    """A model initialised on ``interactions`` with random parameters (embeddings with standard
    deviation ``scale``, biases ``0.75 * scale``) and, if ``warm``, random optimizer state.
    Returns (model, user_features, item_features)."""
    n_users, n_items = interactions.shape
    user_features = weighted_features(n_users, 2, seed + 1) if features else None
    item_features = weighted_features(n_items, 3, seed + 2) if features else None
    settings = dict(
        no_components=N_COMPONENTS,
        loss=loss,
        learning_schedule=schedule,
        learning_rate=LEARNING_RATE,
        rho=RHO,
        epsilon=EPSILON,
        user_alpha=USER_ALPHA,
        item_alpha=ITEM_ALPHA,
        random_state=seed,
    )
    settings.update(params)
    model = FastRank(**settings)
    model.fit(interactions, user_features, item_features, sample_weight=sample_weight, epochs=0)

    # fresh optimizer state
    for side in ("user", "item"):
        acc = (getattr(model, f"_{side}_embedding_acc"), getattr(model, f"_{side}_bias_acc"))
        if schedule == "sgd":
            assert all(a is None for a in acc)  # plain SGD keeps no optimizer state
        elif schedule == "adagrad":
            assert model._initial_accumulator() > 0
            assert all(np.all(a == np.float32(model._initial_accumulator())) for a in acc)
        else:
            momentum = (getattr(model, f"_{side}_embedding_momentum"), getattr(model, f"_{side}_bias_momentum"))
            assert all(np.all(a == 0) for a in acc + momentum)

    rng = np.random.default_rng(seed + 100)
    # warm state: adagrad's sums of squared gradients; adadelta's E[update^2] (acc) below its
    # E[gradient^2] (momentum), so that steps stay of a sensible size
    ranges = {"acc": (0.5, 2.0)} if schedule == "adagrad" else {"acc": (1e-4, 1e-2), "momentum": (1e-2, 0.5)}
    for side in ("user", "item"):
        embeddings, biases = getattr(model, f"{side}_embeddings"), getattr(model, f"{side}_biases")
        embeddings[...] = rng.normal(0.0, scale, embeddings.shape)
        biases[...] = rng.normal(0.0, 0.75 * scale, biases.shape)
        if warm:
            for key in ("acc", "bias_acc", "momentum", "bias_momentum"):
                name = SIDE_ARRAYS[key].format(side=side)
                if name in attribute_names(model):
                    low, high = ranges[key.replace("bias_", "")]
                    getattr(model, name)[...] = rng.uniform(low, high, getattr(model, name).shape)
    return model, user_features, item_features


def assert_matches(actual, expected, before):
    """``actual`` (the kernel) equals ``expected`` (the reference) for every array: entries the
    reference left alone bit-for-bit, the others to rtol 1e-5 (atol 1e-6 of the array's scale)."""
    for name in expected:
        unchanged = expected[name] == before[name].astype(np.float64)
        np.testing.assert_array_equal(actual[name][unchanged], before[name][unchanged], err_msg=name)
        scale = max(np.abs(expected[name]).max(), np.finfo(np.float32).tiny)
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6 * scale, err_msg=name)


def run_epoch_both(model, interactions, user_features, item_features, sample_weight, make_script):
    """Run the reference and then the kernel on one epoch; compare every array. ``make_script``
    maps the visit order to the list of scripted draws. Returns (reference trace, order)."""
    csr = sp.csr_matrix(interactions, dtype=np.float32)
    csr.sort_indices()
    if sample_weight is None:
        weights = np.ones(csr.nnz)
    else:
        weights = sp.csr_matrix(sample_weight, dtype=np.float32)
        weights.sort_indices()
        weights = weights.data
    n_examples = csr.nnz if model.loss == "logistic" else int(np.sum(csr.data > 0))

    replay = copy.deepcopy(model._rng)
    order = shuffled_order(int(replay.integers(0, 2**63)), n_examples)
    replay.integers(0, 2**63)  # the epoch's sampler seed, unused: the script covers every draw
    script = list(make_script(order))

    before = snapshot(model)
    reference = Reference(model.loss, before, user_features, item_features, model, script)
    reference.epoch(csr, weights.astype(np.float64), order)
    expected = {
        SIDE_ARRAYS[key].format(side=side): value
        for side, arrays in (("user", reference.users.p), ("item", reference.items.p))
        for key, value in arrays.items()
    }

    model._fit_partial(
        interactions, user_features, item_features, sample_weight, 1, 1, False,
        _script=np.array(script, dtype=np.int32) if script else None,
    )
    assert model._rng.bit_generator.state == replay.bit_generator.state  # the replay was faithful
    assert_matches(snapshot(model), expected, before)
    return reference.trace, order


def matrix(shape, entries):
    """float32 CSR with the given {(row, col): value} entries (explicit zeros kept)."""
    rows, cols, values = zip(*[(r, c, v) for (r, c), v in entries.items()])
    return sp.csr_matrix((values, (rows, cols)), shape=shape, dtype=np.float32)


def visits_by_user(order, example_users):
    """For each visit in ``order``: (user, how many times that user was visited before)."""
    seen = {}
    for index in order:
        user = example_users[index]
        yield user, seen.get(user, 0)
        seen[user] = seen.get(user, 0) + 1


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("components", [N_COMPONENTS, BLOCKED_COMPONENTS])
@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("loss", LOSSES)
def test_single_step(loss, schedule, features, components):
    """One interaction, one example, one step from a freshly initialised optimizer state."""
    interactions = matrix((3, 6), {(1, 2): 3.0})
    sample_weight = None if loss == "warp-kos" else matrix((3, 6), {(1, 2): 0.7})
    model, uf, itf = make_model(loss, schedule, interactions, features, sample_weight, seed=3,
                                no_components=components)
    set_bias(model, 4, 3.0)  # the scripted negative violates WARP's margin whatever the embeddings
    script = {"logistic": [], "bpr": [4], "warp": [4], "warp-kos": [0, 4]}[loss]
    trace, _ = run_epoch_both(model, interactions, uf, itf, sample_weight, lambda order: script)
    expected = {
        "logistic": [("logistic", 1.0)],
        "bpr": [("update", 4)],
        "warp": [("update", 4, 1)],
        "warp-kos": [("kos", 2), ("update", 4, 1)],
    }[loss]
    assert trace == expected


@pytest.mark.parametrize("components", [N_COMPONENTS, BLOCKED_COMPONENTS])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("loss", ["logistic", "bpr"])
def test_steps_without_l2(loss, schedule, components):
    """With user_alpha = item_alpha = 0 (the defaults) the adagrad and SGD row updates take their
    loops without the L2 term (adadelta has one loop, run here too): they must step as the
    reference does, over a warm epoch of several examples."""
    interactions = matrix((4, 7), {(0, 1): 1.0, (1, 2): 3.0, (1, 5): 1.0, (3, 0): -1.0, (3, 6): 2.0})
    model, uf, itf = make_model(loss, schedule, interactions, False, warm=True, seed=17,
                                no_components=components, user_alpha=0.0, item_alpha=0.0)
    script = {"logistic": [], "bpr": [3, 4, 3, 4]}[loss]  # items no user has a positive for
    trace, _ = run_epoch_both(model, interactions, uf, itf, None, lambda order: script)
    expected = {"logistic": 5, "bpr": 4}[loss]  # BPR trains on the positives only
    assert len(trace) == expected and all(step[0] == {"logistic": "logistic", "bpr": "update"}[loss] for step in trace)


@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_logistic_positive_and_negative_examples(schedule, features):
    """Values > 0 have label 1; values <= 0 (here -1 and an explicit 0) have label 0."""
    entries = {(0, 1): 2.0, (2, 3): -1.0, (1, 0): 0.0, (2, 1): 1.0}
    interactions = matrix((3, 5), entries)
    assert interactions.nnz == 4
    sample_weight = matrix((3, 5), {(0, 1): 0.5, (2, 3): 1.5, (1, 0): 2.0, (2, 1): 1.0})
    model, uf, itf = make_model("logistic", schedule, interactions, features, sample_weight, warm=True, seed=5)
    trace, _ = run_epoch_both(model, interactions, uf, itf, sample_weight, lambda order: [])
    assert sorted(trace) == [("logistic", 0.0)] * 2 + [("logistic", 1.0)] * 2


@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_bpr_redraws_positives(schedule, features):
    """A draw that hits one of the user's positives (the example's own positive included) is
    redrawn; draws are taken modulo n_items."""
    n_items = 6
    interactions = matrix((2, n_items), {(0, 1): 1.0, (0, 4): 2.0, (1, 4): 1.0})
    sample_weight = matrix((2, n_items), {(0, 1): 0.6, (0, 4): 1.0, (1, 4): 2.5})
    model, uf, itf = make_model("bpr", schedule, interactions, features, sample_weight, warm=True, seed=7)
    example_users = [0, 0, 1]
    scripts = {0: [[4, 1, n_items + 3], [2]], 1: [[1]]}  # user 0's visits, user 1's visit

    def make_script(order):
        return [d for user, visit in visits_by_user(order, example_users) for d in scripts[user][visit]]

    trace, _ = run_epoch_both(model, interactions, uf, itf, sample_weight, make_script)
    assert sorted(trace) == sorted([("redraw", 4), ("redraw", 1), ("update", 3), ("update", 2), ("update", 1)])


def test_bpr_gives_up_when_every_item_is_positive():
    """After 100 draws that all hit positives a BPR example is skipped: nothing changes."""
    interactions = matrix((1, 3), {(0, 0): 1.0, (0, 1): 1.0, (0, 2): 1.0})
    model, uf, itf = make_model("bpr", "adagrad", interactions, False, seed=8)
    trace, _ = run_epoch_both(model, interactions, uf, itf, None, lambda order: list(range(300)))
    assert trace.count(("gave up",)) == 3


def set_bias(model, item, value):
    """Set the bias of an item's own feature (the item itself, with or without features)."""
    model.item_biases[item] = value


@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warp_sampling_branches(schedule, features):
    """Negatives below the margin and positives are skipped but counted in the rank weight; a
    large sample weight makes the weight clip at 10; no violator in max_sampled draws means no
    update at all (and exactly max_sampled draws consumed)."""
    n_items = 8
    interactions = matrix((2, n_items), {(0, 1): 1.0, (0, 4): 1.0, (1, 2): 1.0})
    sample_weight = matrix((2, n_items), {(0, 1): 0.8, (0, 4): 10.0, (1, 2): 1.5})
    model, uf, itf = make_model(
        "warp", schedule, interactions, features, sample_weight, warm=True, seed=11, scale=0.15, max_sampled=5
    )
    for item in (6, 7):
        set_bias(model, item, -20.0)  # never violate the margin
    for item in (2, 3, 4):
        set_bias(model, item, 3.0)  # always violate (4 is a positive of user 0, 2 of user 1)
    scripts = {(0, 1): [6, 4, 3], (0, 4): [n_items + 2], (1, 2): [6, 7, 6, 7, 6]}
    examples = [(0, 1), (0, 4), (1, 2)]
    trace, order = run_epoch_both(
        model, interactions, uf, itf, sample_weight, lambda order: [d for i in order for d in scripts[examples[i]]]
    )
    per_example = {
        (0, 1): [("below margin", 6), ("positive", 4), ("update", 3, 3)],  # log(floor(7 / 3))
        (0, 4): [("update", 2, 1)],  # min(10 * log(7), 10)
        (1, 2): [("below margin", 6), ("below margin", 7)] * 2 + [("below margin", 6), ("no violator",)],
    }
    assert trace == [event for i in order for event in per_example[examples[i]]]


def test_warp_without_violator_changes_nothing():
    """max_sampled draws below the margin: no parameter or optimizer state moves at all."""
    interactions = matrix((2, 5), {(1, 0): 1.0})
    model, uf, itf = make_model("warp", "adagrad", interactions, True, warm=True, seed=12, scale=0.15, max_sampled=3)
    set_bias(model, 3, -20.0)
    set_bias(model, 4, -20.0)
    before = snapshot(model)
    trace, _ = run_epoch_both(model, interactions, uf, itf, None, lambda order: [3, 4, 3])
    assert trace[-1] == ("no violator",)
    for name, value in snapshot(model).items():
        assert np.array_equal(value, before[name]), name


@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warp_kos_user_with_several_positives(schedule, features):
    """Every visit of a user draws min(n, count) positives (with replacement) and steps on the
    k-th best of them; one epoch visits user 0 four times (one per positive; n = 4 draws, k = 2)
    and user 1 once (one positive: one draw, fewer than k)."""
    n_items = 10
    interactions = matrix((2, n_items), {(0, 1): 1.0, (0, 3): 2.0, (0, 4): 1.0, (0, 7): 1.0, (1, 5): 1.0})
    model, uf, itf = make_model(
        "warp-kos", schedule, interactions, features, warm=True, seed=13, scale=0.15, k=2, n=4, max_sampled=4
    )
    set_bias(model, 9, -20.0)  # never violates the margin
    for item in (0, 2, 4, 6, 8):
        set_bias(model, item, 3.0)  # always violate (4 is a positive of user 0)
    example_users = [0, 0, 0, 0, 1]
    picks_and_negatives = {
        0: [[1, 0, 6, 3, 4, 8], [3, 3, 0, 2, 2], [2, 1, 3, 5, 9, 0], [0, 2, 1, 1, 6]],
        1: [[7, 5, 2]],  # pick 7 % 1 = 0 (item 5); negative 5 is the user's positive, then 2
    }

    def make_script(order):
        return [d for user, visit in visits_by_user(order, example_users) for d in picks_and_negatives[user][visit]]

    trace, _ = run_epoch_both(model, interactions, uf, itf, None, make_script)
    kinds = {event[0] for event in trace}
    assert {"kos", "positive", "below margin", "update"} <= kinds
    assert trace.count(("update", 0, 2)) == 1  # the visit whose first negative (9) was below the margin


@pytest.mark.parametrize("components", [N_COMPONENTS, BLOCKED_COMPONENTS])
@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("n", [7, 12, 40], ids=["network", "counting", "sorted"])
def test_warp_kos_picks_the_kth_of_many_draws(n, features, components):
    """The kernel selects the k-th best of the draws three ways by their number (a sorting
    network up to 10, counting up to 32, a sort beyond): each must step on the reference's
    choice, repeated draws included (with features a repeated draw reuses its first score).
    Biases 0.5 apart keep every ranking clear of ties."""
    n_positives, n_items = 40, 42
    interactions = matrix((1, n_items), {(0, item): 1.0 for item in range(n_positives)})
    model, uf, itf = make_model("warp-kos", "adagrad", interactions, features, warm=True, seed=5, scale=0.05,
                                k=5, n=n, max_sampled=1, no_components=components)
    own_weight = np.ones(n_items) if itf is None else itf.diagonal()  # what an item's own bias is scaled by
    model.item_biases[n_items:] = 0.0  # shared tags' biases would blur the ranking the own biases set
    for item in range(n_positives):
        set_bias(model, item, 0.5 * ((item * 17) % n_positives) / own_weight[item])  # a ranking unlike the id order
    set_bias(model, n_positives, 50.0)  # the scripted negative: always a violator
    rng = np.random.default_rng(n)

    def make_script(order):
        script = []
        for _ in order:
            picks = rng.integers(0, n_positives, size=n)
            picks[1] = picks[0]  # repeated draws, next to each other and apart
            picks[-1] = picks[2]
            script += [*picks.tolist(), n_positives]
        return script

    trace, _ = run_epoch_both(model, interactions, uf, itf, None, make_script)
    assert sum(event[0] == "kos" for event in trace) == n_positives


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("loss", LOSSES)
def test_same_random_state_is_bit_identical_on_one_thread(loss, schedule):
    """Two fits with the same int random_state and num_threads=1 (random sampling, no script)
    give bit-identical parameters and optimizer state."""
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 40)) < 0.15) * rng.integers(1, 5, (30, 40))
    interactions = sp.csr_matrix(dense.astype(np.float32))
    fits = []
    for _ in range(2):
        model = FastRank(no_components=8, loss=loss, learning_schedule=schedule, random_state=42)
        model.fit(interactions, epochs=2, num_threads=1)
        fits.append(snapshot(model))
    for name in fits[0]:
        assert np.array_equal(fits[0][name], fits[1][name]), name
