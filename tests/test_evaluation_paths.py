"""The k-based metrics have two implementations that must agree exactly: the top-k selection
used by precision_at_k & co. and the full ranking used by ranking_metrics."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank
from fastrank import evaluation

SINGLE = {
    "precision": evaluation.precision_at_k,
    "recall": evaluation.recall_at_k,
    "ndcg": evaluation.ndcg_at_k,
    "map": evaluation.map_at_k,
    "hit_rate": evaluation.hit_rate_at_k,
}


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(0)
    dense = (rng.random((60, 80)) < 0.2).astype(np.float32)
    test = dense * (rng.random(dense.shape) < 0.3)
    train = dense - test
    test[5] = 0  # a user without test items
    test[7, :70], train[7, :70] = 1, 0  # a user with many (takes the other ranking path)
    model = FastRank(no_components=4, random_state=0).fit(sp.csr_matrix(train), epochs=3)
    model.item_embeddings[::5] = model.item_embeddings[1]  # ties
    model.item_biases[::5] = model.item_biases[1]
    return model, sp.csr_matrix(test), sp.csr_matrix(train)


@pytest.mark.parametrize("preserve_rows", [False, True])
@pytest.mark.parametrize("k", [1, 5, 10, 100])
def test_top_k_path_equals_full_ranking(setting, k, preserve_rows):
    model, test, train = setting
    everything = evaluation.ranking_metrics(model, test, train, k=k, preserve_rows=preserve_rows)
    for name, function in SINGLE.items():
        values = function(model, test, train, k=k, preserve_rows=preserve_rows)
        assert values.dtype == np.float32
        np.testing.assert_allclose(values, everything[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        evaluation.precision_at_k(model, test, train, k=k, denominator="min"),
        evaluation.ranking_metrics(model, test, train, k=k, denominator="min")["precision"],
        atol=1e-6,
    )


def test_precision_from_predict_rank(setting):
    model, test, train = setting
    ranks = model.predict_rank(test, train)
    expected = [np.sum(ranks[u].data < 10) / 10 for u in range(test.shape[0]) if ranks[u].nnz]
    np.testing.assert_allclose(evaluation.precision_at_k(model, test, train, k=10), expected, atol=1e-7)
