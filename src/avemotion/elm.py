"""The extreme learning machine (ELM) behind the paper's two-stage fusion (section 2.3.3).

An ELM is a single-hidden-layer network whose input weights and biases are drawn at random
and never trained; only the output weights are learned, in closed form, by regularised
least squares (eqs. 2-4). The fusion stacks two of them: ELM-1 learns gender from the
CNN features, its hidden layer (:meth:`ELMClassifier.transform`) feeds ELM-2, which
learns the emotions, and ELM-2's softmaxed scores (:meth:`ELMClassifier.predict_proba`)
go to the SVM.

Choices the paper leaves open, made here:

- Random hidden layer: input weights w_q ~ N(0, 1 / n_features) and biases
  sigma_q ~ N(0, 1). Scaling by the input width keeps the pre-activations near unit
  variance for standardised inputs, whether they are 2 gender scores or 4096-wide CNN
  features; unscaled uniform [-1, 1] weights would saturate a sigmoid on wide inputs.
- Targets N are one-hot rows in {0, 1}, so an output score estimates class membership.
- Eq. 4 as printed reads alpha = M [M M^T + I/eps]^-1 N; with M of shape P x L
  (samples x hidden nodes) that product is not defined, and the standard ELM solution
  (Huang et al. 2012) is alpha = M^T [M M^T + I/eps]^-1 N, which is what is used.
  Eqs. 3 and 4 are the same ridge solution written for P > L and P <= L; each solves
  the smaller of the two Gram systems (L x L or P x P), by Cholesky, never an inverse.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.linalg
from scipy.special import expit, softmax
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

ACTIVATIONS = {
    "sigmoid": expit,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
}
SOLVERS = ("auto", "eq3", "eq4")
#: The fitted attributes drawn at random, never learned (left out of a pickle when redrawable).
RANDOM_LAYER = ("input_weights_", "biases_")


class ELMClassifier(
    ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Regularised extreme learning machine classifier (paper eqs. 2-4).

    Parameters
    ----------
    n_hidden : int, default=100
        L, the number of hidden nodes (paper: 50 per class, so 100 for ELM-1's two
        genders and 300 for ELM-2 with six emotions).
    activation : {"sigmoid", "tanh", "relu"}, default="sigmoid"
        psi, the hidden nodes' activation.
    C : float, default=1.0
        The paper's regularisation coefficient epsilon > 0: I / C is added to the Gram
        matrix, so a larger C regularises less.
    solver : {"auto", "eq3", "eq4"}, default="auto"
        "auto" uses eq. 3 (an L x L system) when the training set has more samples than
        hidden nodes (P > L) and eq. 4 (a P x P system) otherwise; "eq3" or "eq4" forces
        one (they give the same weights up to rounding).
    random_state : int, RandomState instance or None, default=None
        Seeds the random input weights and biases.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    input_weights_ : ndarray of shape (n_features_in_, n_hidden)
        w_q, one column per hidden node.
    biases_ : ndarray of shape (n_hidden,)
        sigma_q.
    output_weights_ : ndarray of shape (n_hidden, n_classes)
        alpha, solved by eq. 3 or 4.
    solver_ : {"eq3", "eq4"}
        The equation that solved ``output_weights_``.
    """

    def __init__(
        self,
        n_hidden: int = 100,
        activation: str = "sigmoid",
        C: float = 1.0,
        solver: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ):
        self.n_hidden = n_hidden
        self.activation = activation
        self.C = C
        self.solver = solver
        self.random_state = random_state

    def _check_params(self) -> None:
        if not isinstance(self.n_hidden, Integral) or isinstance(self.n_hidden, bool):
            raise ValueError(f"n_hidden must be a positive integer, got {self.n_hidden!r}")
        if self.n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive integer, got {self.n_hidden!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not isinstance(self.C, Real) or not self.C > 0 or not np.isfinite(self.C):
            raise ValueError(f"C (the paper's epsilon) must be a positive number, got {self.C!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")

    def fit(self, X, y) -> ELMClassifier:
        """Draw the hidden layer and solve the output weights for X (P, n_features), y (P,)."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)

        self.input_weights_, self.biases_ = random_layer(
            check_random_state(self.random_state), X.shape[1], self.n_hidden
        )
        self._n_features_out = self.n_hidden  # names transform's columns elmclassifier0..

        hidden = self._hidden(X)  # M, (P, L)
        targets = np.eye(len(self.classes_))[y_index]  # N, (P, n_classes), one-hot {0, 1}
        n_samples = X.shape[0]
        self.solver_ = (
            self.solver
            if self.solver != "auto"
            else ("eq3" if n_samples > self.n_hidden else "eq4")
        )
        self.output_weights_ = solve_output_weights(hidden, targets, self.C, self.solver_)
        return self

    def __getstate__(self) -> dict:
        """The pickled state (joblib, skops): without the random layer when an integer
        ``random_state`` redraws it, since it is most of the model (n_features x n_hidden
        floats: 86 MB on RAVDESS, 6,717 inputs x 1,600 nodes) and carries nothing
        learned. numpy's legacy ``RandomState`` stream, which draws it, is frozen (NEP 19)."""
        state = super().__getstate__()
        if _redrawable(self.random_state) and "input_weights_" in state:
            state = {k: v for k, v in state.items() if k not in RANDOM_LAYER}
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "output_weights_" in state and "input_weights_" not in state:
            self.input_weights_, self.biases_ = random_layer(
                check_random_state(self.random_state), self.n_features_in_, self.n_hidden
            )

    def _hidden(self, X: np.ndarray) -> np.ndarray:
        """M = psi(X W + b), shape (n_samples, n_hidden)."""
        return ACTIVATIONS[self.activation](X @ self.input_weights_ + self.biases_)

    def _validated(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def transform(self, X) -> np.ndarray:
        """The hidden layer's output M, shape (n_samples, n_hidden): ELM-1's input to ELM-2."""
        return self._hidden(self._validated(X))

    def output_scores(self, X) -> np.ndarray:
        """The ELM's output y(x) of eq. 2 for every class, shape (n_samples, n_classes)."""
        return self._hidden(self._validated(X)) @ self.output_weights_

    def decision_function(self, X) -> np.ndarray:
        """Output scores, shape (n_samples, n_classes); for two classes (n_samples,), the
        second class's score minus the first's (scikit-learn's binary convention)."""
        scores = self.output_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        if scores.shape[1] == 1:
            return scores[:, 0]
        return scores

    def predict(self, X) -> np.ndarray:
        """The class with the highest output score, shape (n_samples,)."""
        scores = self.output_scores(X)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the output scores, shape (n_samples, n_classes): what the SVM reads."""
        return softmax(self.output_scores(X), axis=1)


def random_layer(
    rng: np.random.RandomState, n_features: int, n_hidden: int
) -> tuple[np.ndarray, np.ndarray]:
    """The untrained hidden layer: input weights w_q ~ N(0, 1 / n_features), shape
    (n_features, n_hidden), then biases sigma_q ~ N(0, 1), shape (n_hidden,)."""
    weights = rng.standard_normal((n_features, n_hidden)) / np.sqrt(n_features)
    return weights, rng.standard_normal(n_hidden)


def _redrawable(random_state: object) -> bool:
    """Whether ``random_state`` draws the same random layer again (an integer seed)."""
    return isinstance(random_state, Integral) and not isinstance(random_state, bool)


def solve_output_weights(
    hidden: np.ndarray, targets: np.ndarray, C: float, solver: str
) -> np.ndarray:
    """Regularised least-squares output weights alpha, shape (n_hidden, n_outputs).

    ``hidden`` is M (P, L), ``targets`` is N (P, n_outputs).
    eq3: alpha = (M^T M + I/C)^-1 M^T N, an L x L system (cheaper when P > L);
    eq4: alpha = M^T (M M^T + I/C)^-1 N, a P x P system (cheaper when P <= L).
    Both matrices are symmetric positive definite for C > 0, so a Cholesky solve is used.
    """
    if solver == "eq3":
        gram = hidden.T @ hidden
        gram[np.diag_indices_from(gram)] += 1.0 / C
        return scipy.linalg.solve(gram, hidden.T @ targets, assume_a="pos")
    if solver == "eq4":
        gram = hidden @ hidden.T
        gram[np.diag_indices_from(gram)] += 1.0 / C
        return hidden.T @ scipy.linalg.solve(gram, targets, assume_a="pos")
    raise ValueError(f"solver must be 'eq3' or 'eq4', got {solver!r}")
