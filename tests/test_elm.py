"""The ELM of paper eqs. 2-4: scikit-learn compatible, both solvers agree, it learns."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import check_estimator

from avemotion.elm import ELMClassifier, solve_output_weights


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=120, centers=3, n_features=5, cluster_std=1.0, random_state=0)
    return X, y


@pytest.mark.parametrize(
    "estimator",
    [ELMClassifier(), ELMClassifier(activation="relu", n_hidden=30)],
    ids=["default", "relu"],
)
# check_array_api_input skips itself unless SCIPY_ARRAY_API=1 is set before scipy loads.
@pytest.mark.filterwarnings("ignore:.*SCIPY_ARRAY_API:sklearn.exceptions.SkipTestWarning")
def test_passes_sklearn_estimator_checks(estimator: ELMClassifier) -> None:
    check_estimator(estimator)


def test_eq3_and_eq4_give_the_same_output_weights(blobs) -> None:
    X, y = blobs  # P = 120 samples, L = 40 hidden nodes: both systems are well posed
    eq3 = ELMClassifier(n_hidden=40, C=10.0, solver="eq3", random_state=1).fit(X, y)
    eq4 = ELMClassifier(n_hidden=40, C=10.0, solver="eq4", random_state=1).fit(X, y)
    assert (eq3.solver_, eq4.solver_) == ("eq3", "eq4")
    np.testing.assert_array_equal(eq3.input_weights_, eq4.input_weights_)
    np.testing.assert_allclose(eq3.output_weights_, eq4.output_weights_, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(eq3.predict(X), eq4.predict(X))
    np.testing.assert_allclose(eq3.predict_proba(X), eq4.predict_proba(X), atol=1e-9)


def test_auto_solver_picks_the_smaller_system(blobs) -> None:
    X, y = blobs
    assert ELMClassifier(n_hidden=40, random_state=0).fit(X, y).solver_ == "eq3"  # P > L
    assert ELMClassifier(n_hidden=120, random_state=0).fit(X, y).solver_ == "eq4"  # P <= L
    assert ELMClassifier(n_hidden=300, random_state=0).fit(X, y).solver_ == "eq4"


def test_output_weights_are_the_ridge_solution() -> None:
    rng = np.random.default_rng(0)
    hidden, targets = rng.random((30, 8)), np.eye(3)[rng.integers(0, 3, 30)]
    expected = np.linalg.lstsq(
        np.vstack([hidden, np.eye(8) / np.sqrt(2.0)]),  # ||M a - N||^2 + ||a||^2 / C, C = 2
        np.vstack([targets, np.zeros((8, 3))]),
        rcond=None,
    )[0]
    for solver in ("eq3", "eq4"):
        np.testing.assert_allclose(solve_output_weights(hidden, targets, 2.0, solver), expected)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_hidden_layer_has_the_configured_width(blobs, activation: str) -> None:
    X, y = blobs
    elm = ELMClassifier(n_hidden=37, activation=activation, random_state=0).fit(X, y)
    hidden = elm.transform(X[:11])
    assert hidden.shape == (11, 37)
    assert elm.input_weights_.shape == (5, 37) and elm.output_weights_.shape == (37, 3)
    if activation == "sigmoid":
        assert hidden.min() > 0 and hidden.max() < 1
    if activation == "relu":
        assert hidden.min() == 0


def test_predict_proba_is_a_softmax_over_classes(blobs) -> None:
    X, y = blobs
    elm = ELMClassifier(n_hidden=50, random_state=0).fit(X, y)
    proba = elm.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    scores = elm.output_scores(X)
    np.testing.assert_allclose(np.log(proba[:, 0] / proba[:, 1]), scores[:, 0] - scores[:, 1])
    np.testing.assert_array_equal(elm.classes_[proba.argmax(axis=1)], elm.predict(X))


def test_learns_a_separable_problem_with_string_labels() -> None:
    X, y_index = make_blobs(n_samples=200, centers=4, n_features=10, random_state=3)
    y = np.array(["angry", "happy", "neutral", "sad"])[y_index]
    X_train, y_train, X_test, y_test = X[:150], y[:150], X[150:], y[150:]
    elm = ELMClassifier(n_hidden=100, C=10.0, random_state=0).fit(X_train, y_train)
    assert list(elm.classes_) == ["angry", "happy", "neutral", "sad"]
    assert np.mean(elm.predict(X_test) == y_test) >= 0.95


def test_binary_decision_function_is_the_score_difference() -> None:
    X, y = make_blobs(n_samples=80, centers=2, n_features=3, random_state=0)
    elm = ELMClassifier(n_hidden=20, random_state=0).fit(X, np.where(y == 1, "male", "female"))
    decision = elm.decision_function(X)
    assert decision.shape == (80,)
    np.testing.assert_array_equal(np.where(decision > 0, "male", "female"), elm.predict(X))
    assert np.mean(elm.predict(X) == np.where(y == 1, "male", "female")) >= 0.95


def test_same_random_state_gives_identical_results(blobs) -> None:
    X, y = blobs
    first = ELMClassifier(n_hidden=60, random_state=5).fit(X, y)
    second = ELMClassifier(n_hidden=60, random_state=5).fit(X, y)
    other = ELMClassifier(n_hidden=60, random_state=6).fit(X, y)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    assert not np.allclose(first.transform(X), other.transform(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_hidden": 0}, "n_hidden"),
        ({"activation": "softplus"}, "activation"),
        ({"C": 0.0}, "epsilon"),
        ({"solver": "pinv"}, "solver"),
    ],
)
def test_bad_parameters_are_named(blobs, params: dict, message: str) -> None:
    X, y = blobs
    with pytest.raises(ValueError, match=message):
        ELMClassifier(**params).fit(X, y)


def test_a_pickle_leaves_out_the_random_layer_and_redraws_it(blobs) -> None:
    """With an integer seed the input weights and biases are not stored (they are most of
    the model and are drawn, not learned); loading draws them again, bit for bit."""
    X, y = blobs
    wide = np.hstack([X] * 50)  # 250 inputs x 200 hidden nodes: the layer dominates
    elm = ELMClassifier(n_hidden=200, random_state=5).fit(wide, y)
    stored = pickle.dumps(elm)
    assert len(stored) < wide.shape[1] * 200 * 8 / 4
    loaded = pickle.loads(stored)
    np.testing.assert_array_equal(loaded.input_weights_, elm.input_weights_)
    np.testing.assert_array_equal(loaded.biases_, elm.biases_)
    np.testing.assert_array_equal(loaded.predict_proba(wide), elm.predict_proba(wide))
    # a RandomState instance cannot draw the same layer again: the layer is stored
    drawn = ELMClassifier(n_hidden=200, random_state=np.random.RandomState(5)).fit(wide, y)
    assert len(pickle.dumps(drawn)) > wide.shape[1] * 200 * 8
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(drawn)).predict_proba(wide), drawn.predict_proba(wide)
    )
