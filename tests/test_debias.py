"""Popularity debiasing: the zerosum / pos2neg2 regularisers, the PRI and PopQ@1 metrics, IPW."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata, spearmanr

from fastrank import FastRank
from fastrank.datasets import make_popularity_triangle
from fastrank.debias import inverse_propensity_weights
from fastrank.evaluation import auc_score, popq_at_1, popularity_rank_correlation


def triangle(n_users=200, n_items=200, boundary=200):
    return make_popularity_triangle(n_users, n_items, boundary)


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("loss", ["logistic", "warp-kos"])
def test_debias_needs_bpr_or_warp(loss):
    with pytest.raises(ValueError, match="debias"):
        FastRank(loss=loss, debias="zerosum").fit(triangle(10, 10, 10))


@pytest.mark.parametrize("params", [dict(debias="zero-sum"), dict(debias=1), dict(debias_weight=-1.0),
                                    dict(debias_weight=float("nan"))])
def test_bad_debias_parameters(params):
    with pytest.raises(ValueError, match="debias"):
        FastRank(loss="bpr", **params).fit(triangle(10, 10, 10))


# ---------------------------------------------------------------- gradients

def regulariser(kind, user, items, biases, weight):
    """The regulariser's value for ranking scores s_j = user . item_j + bias_j, in float64."""
    scores = items @ user + biases
    term = lambda x: -np.log(1.0 - np.tanh(abs(x)))  # noqa: E731
    if kind == "zerosum":
        return weight * term(scores[0] + scores[1])
    return weight * (term(scores[0] - scores[2]) + term(scores[1] - scores[3]))


def central_differences(function, array, step=1e-6):
    """d function() / d array, by central differences, perturbing ``array`` in place."""
    gradient = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + step
        above = function()
        array[index] = original - step
        below = function()
        array[index] = original
        gradient[index] = (above - below) / (2 * step)
    return gradient


def numerical_gradients(kind, user, items, biases, weight):
    user, items, biases = user.copy(), items.copy(), biases.copy()

    def value():
        return regulariser(kind, user, items, biases, weight)

    return central_differences(value, user), central_differences(value, items), central_differences(value, biases)


@pytest.mark.parametrize("kind", ["zerosum", "pos2neg2"])
def test_regulariser_gradient_matches_finite_differences(kind):
    """One BPR step with and without the regulariser, from the same state and the same draws:
    the difference is the regulariser's adagrad step, -lr * gradient / sqrt(initial accumulator)."""
    n_items, d = 6, 5
    # user 0 likes items 0, 1, 2; item 0 is the example's positive
    interactions = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [0, 1, 2])), shape=(2, n_items))
    negative, second_positive_index, second_negative = 4, 2, 5  # p2 = positives of user 0 [2] = item 2
    rng = np.random.default_rng(7)
    weight = 0.8

    def run(debias):
        model = FastRank(loss="bpr", no_components=d, learning_rate=0.05, random_state=0, debias=debias,
                         debias_weight=1.7)
        model.fit(interactions, epochs=0)
        model.user_embeddings[:] = rng_state.normal(size=model.user_embeddings.shape).astype(np.float32)
        model.item_embeddings[:] = rng_state.normal(size=model.item_embeddings.shape).astype(np.float32) * 0.3
        model.item_biases[:] = rng_state.normal(size=n_items).astype(np.float32) * 0.3
        start = {name: getattr(model, name).copy() for name in ("user_embeddings", "item_embeddings", "item_biases",
                                                                 "user_biases")}
        # the positives lookup must know all of user 0's positives: train on the full row with
        # weight 0 elsewhere, so that only the (0, 0) example moves anything
        weights = interactions.copy()
        weights.data = np.array([weight, 0.0, 0.0], dtype=np.float32)
        script = []
        # examples are visited in a shuffled order: give every visit the same draws
        for _ in range(3):
            script += [negative] + ([second_positive_index, second_negative] if debias == "pos2neg2" else [])
        model._fit_partial(interactions, None, None, weights, 1, 1, False, _script=np.array(script, np.int32))
        return model, start

    seed = int(rng.integers(1000))
    rng_state = np.random.default_rng(seed)
    plain, start = run(None)
    rng_state = np.random.default_rng(seed)
    regularised, start_again = run(kind)
    for name in start:
        np.testing.assert_array_equal(start[name], start_again[name])

    scale = np.sqrt(plain._initial_accumulator()) / plain.learning_rate
    kernel_user = -(regularised.user_embeddings[0] - plain.user_embeddings[0]).astype(np.float64) * scale
    kernel_items = -(regularised.item_embeddings - plain.item_embeddings).astype(np.float64) * scale
    kernel_biases = -(regularised.item_biases - plain.item_biases).astype(np.float64) * scale

    involved = [0, negative, 2, second_negative] if kind == "pos2neg2" else [0, negative]
    user = start["user_embeddings"][0].astype(np.float64)
    items = start["item_embeddings"][involved].astype(np.float64)
    biases = start["item_biases"][involved].astype(np.float64)
    grad_user, grad_items, grad_biases = numerical_gradients(kind, user, items, biases, weight * 1.7)
    np.testing.assert_allclose(kernel_user, grad_user, rtol=2e-3, atol=2e-4)
    for row, item in enumerate(involved):
        np.testing.assert_allclose(kernel_items[item], grad_items[row], rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(kernel_biases[item], grad_biases[row], rtol=2e-3, atol=2e-4)
    untouched = [item for item in range(n_items) if item not in involved]
    np.testing.assert_allclose(kernel_items[untouched], 0.0, atol=1e-6)
    # the regulariser works on ranking scores: the user bias is not part of it
    np.testing.assert_array_equal(regularised.user_biases, plain.user_biases)
    assert np.abs(grad_user).max() > 0.1  # the scenario really exercises the regulariser


@pytest.mark.parametrize("kind", ["zerosum", "pos2neg2"])
def test_regulariser_stays_finite_when_scores_are_huge(kind):
    """tanh(|x|) rounds to 1 for large scores; the step must still be finite (and bounded)."""
    interactions = triangle(30, 30, 30)
    model = FastRank(loss="warp", debias=kind, learning_rate=1e-4, random_state=0).fit(interactions, epochs=0)
    model.user_embeddings[:] = 30.0
    model.item_embeddings[:] = 30.0  # scores around 9,000
    before = model.item_embeddings.copy()
    model.fit_partial(interactions, epochs=1)
    assert np.all(np.isfinite(model.item_embeddings)) and np.all(np.isfinite(model.item_biases))
    assert not np.array_equal(before, model.item_embeddings)


# ---------------------------------------------------------------- metrics

def reference_pri(model, interactions):
    csr = sp.csr_matrix(interactions)
    popularity = np.asarray((csr > 0).sum(axis=0)).ravel()
    quantile_sum = np.zeros(csr.shape[1])
    quantile_count = np.zeros(csr.shape[1])
    for user in range(csr.shape[0]):
        items = csr[user].indices[csr[user].data > 0]
        if items.size < 2:
            continue
        scores = model.predict(user, items).astype(np.float64)
        ranks = rankdata(-scores) - 1  # average ranks, 0 = top
        quantile_sum[items] += ranks / (items.size - 1)
        quantile_count[items] += 1
    rated = quantile_count > 0
    return -spearmanr(popularity[rated], quantile_sum[rated] / quantile_count[rated])[0]


def reference_popq(model, interactions):
    csr = sp.csr_matrix(interactions)
    popularity = np.asarray((csr > 0).sum(axis=0)).ravel()
    values = []
    for user in range(csr.shape[0]):
        items = np.sort(csr[user].indices[csr[user].data > 0])
        if items.size < 2:
            continue
        scores = model.predict(user, items).astype(np.float64)
        top = np.flatnonzero(scores == scores.max())[0]  # ties: the lower item id
        popularity_ranks = rankdata(-popularity[items]) - 1
        values.append(popularity_ranks[top] / (items.size - 1))
    return np.mean(values)


@pytest.mark.parametrize("seed", [0, 1])
def test_bias_metrics_match_numpy_references(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((40, 25)) < rng.random(25) * 0.6).astype(np.float32)
    dense[0, :] = 0
    dense[1, :1] = 1  # a user with one positive is skipped
    interactions = sp.coo_matrix(dense)
    model = FastRank(loss="bpr", no_components=4, random_state=seed).fit(interactions, epochs=3)
    model.item_embeddings[3] = model.item_embeddings[4]  # some tied scores
    model.item_biases[3] = model.item_biases[4]
    assert popularity_rank_correlation(model, interactions) == pytest.approx(reference_pri(model, interactions),
                                                                             abs=1e-9)
    assert popq_at_1(model, interactions) == pytest.approx(reference_popq(model, interactions), abs=1e-9)


def test_bias_metrics_extremes():
    interactions = triangle(30, 30, 30)
    popularity = np.asarray(sp.csr_matrix(interactions).sum(axis=0)).ravel()
    model = FastRank(loss="bpr", no_components=2, random_state=0).fit(interactions, epochs=0)
    model.item_embeddings[:] = 0
    model.item_biases[:] = popularity.astype(np.float32)  # scores = popularity: fully biased
    assert popularity_rank_correlation(model, interactions) == pytest.approx(1.0)
    # items 0 and 1 are equally popular, so a user's top item sits at a tied quantile: not exactly 0
    assert popq_at_1(model, interactions) == pytest.approx(reference_popq(model, interactions))
    assert popq_at_1(model, interactions) < 0.1
    model.item_biases[:] = -popularity.astype(np.float32)  # least popular first
    assert popularity_rank_correlation(model, interactions) == pytest.approx(-1.0)
    assert popq_at_1(model, interactions) == pytest.approx(reference_popq(model, interactions))
    assert popq_at_1(model, interactions) > 0.9


def test_bias_metrics_need_users_with_two_positives():
    model = FastRank(random_state=0).fit(sp.identity(5, format="coo"), epochs=0)
    with pytest.raises(ValueError, match="two positive"):
        popularity_rank_correlation(model, sp.identity(5))
    with pytest.raises(ValueError, match="two positive"):
        popq_at_1(model, sp.identity(5))


# ---------------------------------------------------------------- inverse propensity weights

def test_inverse_propensity_weights():
    interactions = triangle(20, 20, 20)
    popularity = np.asarray(sp.csr_matrix(interactions).sum(axis=0)).ravel()
    weights = inverse_propensity_weights(interactions, power=1.0)
    csr = weights.tocsr()
    assert csr.dtype == np.float32 and csr.shape == interactions.shape
    np.testing.assert_array_equal(csr.indices, sp.csr_matrix(interactions).indices)
    assert csr.data.mean() == pytest.approx(1.0, rel=1e-6)
    expected = 1.0 / popularity[csr.indices]
    np.testing.assert_allclose(csr.data, expected / expected.mean(), rtol=1e-5)
    half = inverse_propensity_weights(interactions, power=0.5).tocsr()
    np.testing.assert_allclose(half.data, popularity[csr.indices] ** -0.5 / np.mean(popularity[csr.indices] ** -0.5),
                               rtol=1e-5)
    clipped = inverse_propensity_weights(interactions, clip=2.0).tocsr()
    assert clipped.data.max() <= 2.0 + 1e-6 and clipped.data.mean() == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(inverse_propensity_weights(interactions, power=0.0).data, 1.0)
    FastRank(loss="bpr", random_state=0).fit(interactions, sample_weight=weights, epochs=1)


@pytest.mark.parametrize("arguments", [dict(power=-1.0), dict(power=float("nan")), dict(clip=1.0), dict(clip=0.5),
                                       dict(power=10**400), dict(clip=10**400), dict(power="1")])
def test_inverse_propensity_weights_bad_arguments(arguments):
    with pytest.raises(ValueError):
        inverse_propensity_weights(triangle(5, 5, 5), **arguments)


@pytest.mark.parametrize("kind", ["zerosum", "pos2neg2"])
@pytest.mark.parametrize("params", [dict(learning_schedule="adadelta"), dict(item_alpha=0.01),
                                    dict(learning_schedule="sgd", item_alpha=0.01), {}])
def test_weight_zero_trains_exactly_as_no_regulariser(kind, params):
    """pos2neg2 at weight 0 still stepped its second positive and negative: adadelta's state and
    the L2 penalty moved them (0.69 from the plain model under adadelta, 0.18 with item_alpha)."""
    interactions = triangle(40, 40, 40)
    models = [FastRank(loss="bpr", no_components=8, random_state=3, **params, **extra).fit(interactions, epochs=3)
              for extra in ({}, dict(debias=kind, debias_weight=0.0))]
    for name in ("user_embeddings", "item_embeddings", "item_biases"):
        np.testing.assert_array_equal(getattr(models[0], name), getattr(models[1], name), err_msg=name)


# ---------------------------------------------------------------- the paper's synthetic experiment

def triangle_results(**params):
    interactions = triangle()
    results = []
    for seed in range(3):
        model = FastRank(loss="bpr", no_components=32, learning_rate=0.05, random_state=seed, **params)
        model.fit(interactions, epochs=20)
        results.append((popularity_rank_correlation(model, interactions), popq_at_1(model, interactions),
                        auc_score(model, interactions).mean()))
    return np.mean(results, axis=0)


@pytest.fixture(scope="module")
def plain_bpr():
    return triangle_results()


def test_plain_bpr_is_popularity_biased(plain_bpr):
    pri, popq, auc = plain_bpr
    assert pri >= 0.5 and popq < 0.25 and auc > 0.95


def check_debiasing(plain, regularised, what):
    pri, popq, auc = regularised
    assert pri <= plain[0] / 2, f"{what}: PRI {pri:.3f} vs BPR {plain[0]:.3f}"
    assert abs(popq - 0.5) <= abs(plain[1] - 0.5) / 2, f"{what}: PopQ@1 {popq:.3f} vs BPR {plain[1]:.3f}"
    assert abs(auc - plain[2]) <= 0.01, f"{what}: AUC {auc:.4f} vs BPR {plain[2]:.4f}"


def test_zerosum_halves_popularity_bias(plain_bpr):
    check_debiasing(plain_bpr, triangle_results(debias="zerosum"), "zerosum")


@pytest.mark.xfail(
    strict=True,
    reason="under adagrad pos2neg2 overshoots: on seeds 0-2 PopQ@1 averages about 0.78 (distance 0.28 to "
    "0.5; the bound, half of BPR's distance, is about 0.24) at every debias_weight from 0.1 to 1, while PRI "
    "falls to about 0.33; adadelta meets the bound (test below); see docs/debiasing.md",
)
def test_pos2neg2_halves_popularity_bias(plain_bpr):
    check_debiasing(plain_bpr, triangle_results(debias="pos2neg2"), "pos2neg2")


def test_pos2neg2_reduces_popularity_rank_correlation(plain_bpr):
    pri, popq, auc = triangle_results(debias="pos2neg2")
    assert pri <= plain_bpr[0] / 2 and popq > 0.3 and abs(auc - plain_bpr[2]) <= 0.01


@pytest.fixture(scope="module")
def plain_bpr_adadelta():
    return triangle_results(learning_schedule="adadelta")


@pytest.mark.parametrize("kind", ["zerosum", "pos2neg2"])
def test_regularisers_halve_popularity_bias_under_adadelta(plain_bpr_adadelta, kind):
    # adadelta's decaying squared-gradient average is the schedule closest to the Adam optimiser the
    # paper trained with (docs/debiasing.md: why adagrad's tighter fit puts pos2neg2's top positive
    # on a rare item at 20 epochs).
    pri, popq, auc = plain_bpr_adadelta
    assert pri >= 0.5 and popq < 0.25
    check_debiasing(plain_bpr_adadelta, triangle_results(debias=kind, learning_schedule="adadelta"), kind)
