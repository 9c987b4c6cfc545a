"""GLUE metrics: hand-computed cases, scipy on random data with ties, the degenerate-case rule."""
import numpy as np
import pytest
from scipy import stats

from bert_tf.training import metrics


def test_accuracy_and_f1_by_hand():
    predictions = [1, 1, 0, 0, 1]
    labels = [1, 0, 0, 1, 1]
    assert metrics.accuracy(predictions, labels) == pytest.approx(3 / 5)
    # TP = 2, FP = 1, FN = 1: F1 = 2·2 / (2·2 + 1 + 1).
    assert metrics.f1_score(predictions, labels) == pytest.approx(4 / 6)
    # F1 of class 0 instead: TP = 1, FP = 1, FN = 1.
    assert metrics.f1_score(predictions, labels, positive=0) == pytest.approx(2 / 4)


def test_matthews_binary_by_hand():
    predictions = [1, 1, 0, 0, 1]
    labels = [1, 0, 0, 1, 1]
    tp, tn, fp, fn = 2, 1, 1, 1
    expected = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(expected)
    assert metrics.matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert metrics.matthews_corrcoef([1 - y for y in labels], labels) == pytest.approx(-1.0)


def test_matthews_multiclass_is_the_one_hot_correlation():
    # An independent formulation: MCC = cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)) over one-hot
    # matrices (Gorodkin 2004), summed over classes.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, 200))
    x, y = np.eye(3)[predictions], np.eye(3)[labels]
    x, y = x - x.mean(0), y - y.mean(0)
    expected = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
    assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(expected)


def test_degenerate_cases_are_zero():
    ones = [1, 1, 1, 1]
    assert metrics.matthews_corrcoef(ones, [1, 0, 1, 0]) == 0.0  # one predicted class
    assert metrics.matthews_corrcoef([1, 0, 1, 0], ones) == 0.0  # one true class
    assert metrics.matthews_corrcoef(ones, ones) == 0.0  # all-one-class, as sklearn
    assert metrics.f1_score([0, 0], [0, 0]) == 0.0  # no positive prediction nor label
    assert metrics.f1_score([1, 1], [0, 0]) == 0.0
    assert metrics.pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0  # zero variance
    assert metrics.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0
    assert metrics.accuracy([], []) == 0.0
    assert metrics.pearson([], []) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = np.round(rng.uniform(0, 5, 300), 1)  # STS-B-like scores: many ties
    predictions = np.round(labels + rng.normal(0, 1.0, 300), 0)  # coarse: more ties
    assert metrics.pearson(predictions, labels) == pytest.approx(
        stats.pearsonr(predictions, labels)[0], abs=1e-12)
    assert metrics.spearman(predictions, labels) == pytest.approx(
        stats.spearmanr(predictions, labels)[0], abs=1e-12)
    np.testing.assert_array_equal(metrics.rankdata(predictions), stats.rankdata(predictions))


def test_rankdata_averages_ties_by_hand():
    np.testing.assert_array_equal(metrics.rankdata([10, 20, 10, 30, 20, 20]),
                                  [1.5, 4.0, 1.5, 6.0, 4.0, 4.0])
    # Perfectly monotone but non-linear: Spearman 1, Pearson below 1.
    x = np.arange(1.0, 8.0)
    assert metrics.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert metrics.pearson(x, np.exp(x)) < 0.9


def test_compute_by_name_and_errors():
    result = metrics.compute(("f1", "accuracy"), [1, 0, 1], [1, 1, 1])
    assert result == {"f1": pytest.approx(0.8), "accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.compute(["auc"], [1], [1])
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        metrics.accuracy([1, 0], [1, 0, 1])
