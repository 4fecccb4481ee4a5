"""Offline metrics against scikit-learn and scipy."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from mtft_nlp.metrics import accuracy, compute_metrics, f1_binary, matthews, pearson, spearman


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, 200)
    p = np.where(rng.rand(200) < 0.7, y, 1 - y)
    assert accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p))
    assert f1_binary(p, y) == pytest.approx(skm.f1_score(y, p))
    assert matthews(p, y) == pytest.approx(skm.matthews_corrcoef(y, p))
    y3, p3 = rng.randint(0, 6, 300), rng.randint(0, 6, 300)
    assert matthews(p3, y3) == pytest.approx(skm.matthews_corrcoef(y3, p3))


def test_negative_and_degenerate_matthews():
    y = np.array([0, 1, 0, 1, 1, 0])
    assert matthews(1 - y, y) == pytest.approx(-1.0)
    assert matthews(np.ones(6, int), y) == skm.matthews_corrcoef(y, np.ones(6, int)) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_correlations_match_scipy(seed):
    rng = np.random.RandomState(seed)
    y = rng.uniform(0, 5, 100).round(1)  # ties
    p = y + rng.normal(0, 1, 100)
    p[:10] = 2.0
    assert pearson(p, y) == pytest.approx(stats.pearsonr(p, y)[0])
    assert spearman(p, y) == pytest.approx(stats.spearmanr(p, y)[0])


def test_compute_metrics_score_key():
    y, p = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert compute_metrics("f1", p, y)["score"] == pytest.approx(skm.f1_score(y, p))
    assert compute_metrics("mcc", p, y)["score"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert compute_metrics("acc", p, y) == {"acc": 0.75, "score": 0.75}
    r = compute_metrics("pearson", [1.0, 2.0, 3.5], [1.0, 2.5, 3.0])
    assert r["score"] == r["pearson"] and "spearman" in r


def test_degenerate_inputs_keep_their_conventions():
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0  # constant prediction: 0, not NaN
    assert spearman([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0
    assert pearson([1.0], [2.0]) == 0.0 and spearman([], []) == 0.0  # fewer than two values
    assert np.isnan(pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))  # a NaN prediction is not hidden
    assert np.isnan(spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    assert f1_binary([], []) == 0.0 and matthews([], []) == 0.0
    assert f1_binary([0, 0, 2], [0, 2, 2]) == 0.0  # positive class absent
    assert f1_binary([1, 0, 2], [1, 2, 2]) == pytest.approx(1.0)  # one class against the rest
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    assert all(isinstance(v, float) for v in compute_metrics("mcc", [0, 1, 1], [0, 1, 0]).values())
