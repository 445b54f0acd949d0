"""The fusion's estimators: :class:`TwoStageELM` (scaler, ELM-1, ELM-2) and
:class:`ELMFusion` (the whole system, with its SVM), as scikit-learn estimators.

What each stage of the paper's fusion is, and the choices made, is in
:mod:`avemotion.fusion`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Any, get_args

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from avemotion.elm import ELMClassifier
from avemotion.params.schema import Elm2Input, SvmScores

UNKNOWN_GENDERS = frozenset({"unknown", ""})
#: The two ways the SVM is stacked on ELM-2, and the system each gives.
STACKINGS = {"same": "elm_svm", "crossfit": "elm_svm_crossfit"}
ELM2_INPUTS: tuple[str, ...] = get_args(Elm2Input)
SVM_SCORES: tuple[str, ...] = get_args(SvmScores)


class TwoStageELM(BaseEstimator):
    """Standardise -> ELM-1 (gender) -> ELM-1's hidden output -> ELM-2 (emotion).

    ``fit(X, y, gender)`` with X of shape (n_rows, n_features); ``predict_proba(X)`` is
    ELM-2's softmax, shape (n_rows, n_classes), what the SVM reads. With
    ``use_gender=False`` ELM-1 is skipped and ELM-2 reads the standardised features.
    ELM-1 and ELM-2 draw their random hidden layers from two seeds derived from
    ``random_state``.

    ``gender_columns`` and ``emotion_columns`` (column indices of X; None = all) say what
    ELM-1 reads and, with ``elm2_input="features_and_gender"``, what ELM-2 reads beside
    ELM-1's gender probabilities (``fusion.gender_inputs`` and ``fusion.inputs``: e.g.
    pitch-bearing functionals for gender, CNN features for emotion). With ``hidden`` or
    ``hidden_and_gender`` ELM-2 reads ELM-1's hidden output, as in the paper.

    ``n_members`` > 1 fits that many ELM pairs on the same standardised rows, each with
    its own random hidden layers, and averages their ELM-2 softmax (and, for
    :meth:`predict_gender`, their ELM-1 probabilities). A single ELM's scores vary with
    its random draw; the mean of several varies less (an ELM ensemble, as in Liu and
    Wang 2010, "Ensemble based extreme learning machine"). Member 0 draws the same
    hidden layers as ``n_members=1``, which is the paper's single pair.

    Attributes: ``members_``, one (ELM-1 or None, ELM-2) pair per member; ``elm1_`` and
    ``elm2_``, member 0's (the whole model when ``n_members=1``).
    """

    def __init__(
        self,
        elm1_hidden: int = 100,
        elm2_hidden_per_class: int = 50,
        elm_C: float = 1.0,
        activation: str = "sigmoid",
        standardise: bool = True,
        use_gender: bool = True,
        elm2_input: str = "hidden",
        random_state: int | np.random.RandomState | None = None,
        gender_columns: np.ndarray | None = None,
        emotion_columns: np.ndarray | None = None,
        n_members: int = 1,
    ):
        self.gender_columns = gender_columns
        self.emotion_columns = emotion_columns
        self.n_members = n_members
        self.elm1_hidden = elm1_hidden
        self.elm2_hidden_per_class = elm2_hidden_per_class
        self.elm_C = elm_C
        self.activation = activation
        self.standardise = standardise
        self.use_gender = use_gender
        self.elm2_input = elm2_input
        self.random_state = random_state

    def fit(self, X, y, gender=None) -> TwoStageELM:
        """Fit the scaler, then each member's ELM-1 on ``gender`` (n_rows,) and ELM-2 on
        ``y`` (n_rows,)."""
        if self.elm2_input not in ELM2_INPUTS:
            raise ValueError(f"elm2_input must be one of {ELM2_INPUTS}, got {self.elm2_input!r}")
        if not isinstance(self.n_members, Integral) or self.n_members < 1:
            raise ValueError(f"n_members must be a positive integer, got {self.n_members!r}")
        X = check_array(X, dtype=(np.float64, np.float32))
        y = np.asarray(y)
        check_classification_targets(y)
        self.n_features_in_ = X.shape[1]
        # one (ELM-1, ELM-2) seed pair per member; row 0 is what n_members=1 draws
        seeds = check_random_state(self.random_state).randint(
            np.iinfo(np.int32).max, size=(self.n_members, 2)
        )
        self.scaler_ = StandardScaler().fit(X) if self.standardise else None
        scaled = self._scaled(X)
        if self.use_gender:
            gender = self._checked_gender(gender, len(X))
        n_hidden = self.elm2_hidden_per_class * len(np.unique(y))
        features, gender_input = self._member_inputs(scaled)
        self.members_ = []
        for elm1_seed, elm2_seed in seeds:
            elm1 = None
            if self.use_gender:
                elm1 = self._elm(self.elm1_hidden, elm1_seed).fit(gender_input, gender)
            elm2_input = self._elm2_input(features, gender_input, elm1)
            self.members_.append((elm1, self._elm(n_hidden, elm2_seed).fit(elm2_input, y)))
        self.elm1_, self.elm2_ = self.members_[0]
        self.classes_ = self.elm2_.classes_
        return self

    def _elm(self, n_hidden: int, seed: int) -> ELMClassifier:
        return ELMClassifier(
            n_hidden=n_hidden, activation=self.activation, C=self.elm_C, random_state=int(seed)
        )

    @staticmethod
    def _checked_gender(gender, n_rows: int) -> np.ndarray:
        if gender is None:
            raise ValueError("use_gender=True needs the gender of every training row")
        gender = np.asarray(gender).astype(str)
        if len(gender) != n_rows:
            raise ValueError(f"{len(gender)} genders for {n_rows} rows")
        unknown = np.isin(gender, list(UNKNOWN_GENDERS))
        if unknown.any():
            raise ValueError(
                f"{int(unknown.sum())} training rows have unknown gender; ELM-1 learns "
                "gender: give genders or set use_gender=False"
            )
        return gender

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return X if self.scaler_ is None else self.scaler_.transform(X)

    @staticmethod
    def _columns(X: np.ndarray, columns: np.ndarray | None) -> np.ndarray:
        return X if columns is None else X[:, np.asarray(columns, dtype=np.int64)]

    def _member_inputs(self, scaled: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """What every member reads, selected from the standardised rows once: the emotion
        columns (when ELM-2 reads them) and the gender columns (when ELM-1 runs)."""
        reads_features = not self.use_gender or self.elm2_input == "features_and_gender"
        features = self._columns(scaled, self.emotion_columns) if reads_features else None
        gender_input = self._columns(scaled, self.gender_columns) if self.use_gender else None
        return features, gender_input

    def _elm2_input(
        self,
        features: np.ndarray | None,
        gender_input: np.ndarray | None,
        elm1: ELMClassifier | None,
    ) -> np.ndarray:
        """What ELM-2 reads, given :meth:`_member_inputs` and its member's ELM-1."""
        if elm1 is None:
            return features
        if self.elm2_input == "features_and_gender":
            return np.hstack([features, elm1.predict_proba(gender_input)])
        hidden = elm1.transform(gender_input)
        if self.elm2_input == "hidden_and_gender":
            return np.hstack([hidden, elm1.predict_proba(gender_input)])
        return hidden

    def _scaled_input(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._scaled(check_array(X, dtype=(np.float64, np.float32)))

    def elm2_features(self, X) -> np.ndarray:
        """What member 0's ELM-2 reads for X: ELM-1's hidden output (n_rows, elm1_hidden),
        or the standardised features when ELM-1 is skipped (see ``elm2_input``)."""
        return self._elm2_input(*self._member_inputs(self._scaled_input(X)), self.elm1_)

    def predict_proba(self, X) -> np.ndarray:
        """ELM-2's softmaxed scores, averaged over the members, shape (n_rows, n_classes):
        the SVM's input."""
        features, gender_input = self._member_inputs(self._scaled_input(X))
        return np.mean(
            [
                elm2.predict_proba(self._elm2_input(features, gender_input, elm1))
                for elm1, elm2 in self.members_
            ],
            axis=0,
        )

    def predict(self, X) -> np.ndarray:
        """ELM-2's emotion for each row, shape (n_rows,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_gender(self, X) -> np.ndarray:
        """ELM-1's gender for each row (the members' mean probability), shape (n_rows,);
        needs ``use_gender=True``."""
        check_is_fitted(self)
        if self.elm1_ is None:
            raise ValueError("ELM-1 was skipped (use_gender=False): no gender prediction")
        gender_input = self._columns(self._scaled_input(X), self.gender_columns)
        probs = np.mean([elm1.predict_proba(gender_input) for elm1, _ in self.members_], axis=0)
        return self.elm1_.classes_[np.argmax(probs, axis=1)]


@dataclass
class CrossFit:
    """Out-of-fold ELM-2 probabilities and the splits that made them.

    ``probs`` (n_rows, n_classes): row i scored by the ELM pair of the split whose
    ``scored`` holds i. ``splits``: (fitted row indices, scored row indices) per split.
    """

    probs: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]


def cross_fit_probs(
    elm: TwoStageELM,
    X: np.ndarray,
    y: np.ndarray,
    gender: np.ndarray | None,
    groups: np.ndarray,
    n_folds: int,
    classes: np.ndarray,
) -> CrossFit:
    """Score every row by a clone of ``elm`` fitted without the row's group (speaker).

    ``GroupKFold`` with ``min(n_folds, n_groups)`` splits (at least 2 groups needed).
    Columns follow ``classes``; a class absent from a split's training part scores 0.
    """
    groups = np.asarray(groups)
    n_splits = min(int(n_folds), len(np.unique(groups)))
    if n_splits < 2:
        raise ValueError(
            f"cross-fitting needs at least 2 groups (speakers or clips), got "
            f"{len(np.unique(groups))} in n_samples={len(X)}"
        )
    probs = np.zeros((len(X), len(classes)), dtype=np.float64)
    splits = []
    for fitted, scored in GroupKFold(n_splits=n_splits).split(X, y, groups):
        inner = clone(elm).fit(
            X[fitted], y[fitted], None if gender is None else np.asarray(gender)[fitted]
        )
        probs[np.ix_(scored, np.searchsorted(classes, inner.classes_))] = inner.predict_proba(
            X[scored]
        )
        splits.append((fitted, scored))
    return CrossFit(probs, splits)


def make_svm(
    kernel: str = "rbf",
    C: float = 1.0,
    gamma: str | float = "scale",
    scores: str = "softmax",
    random_state: int | None = None,
) -> SVC | CalibratedClassifierCV:
    """The final classifier of section 2.4, on ELM-2's probability rows.

    ``scores="platt"`` wraps the SVC in ``CalibratedClassifierCV(method="sigmoid",
    ensemble=False)``: Platt scaling on 5-fold cross-validated decision values, the
    replacement scikit-learn gives for the deprecated ``SVC(probability=True)``.
    """
    svm = SVC(
        kernel=kernel,
        C=C,
        gamma=gamma,
        decision_function_shape="ovr",
        break_ties=True,
        random_state=random_state,
    )
    if scores == "platt":
        return CalibratedClassifierCV(svm, method="sigmoid", ensemble=False)
    return svm


def svm_class_scores(
    svm: SVC | CalibratedClassifierCV, X: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """Per-row class scores summing to 1, columns following ``classes`` (n_rows, len(classes)).

    A plain SVC: softmax of its one-vs-rest decision function (two classes: of
    ``[0, d]``, i.e. a sigmoid of the binary decision value). A calibrated one (Platt):
    its ``predict_proba``. A class the SVM never saw in training scores 0.
    """
    if isinstance(svm, CalibratedClassifierCV):
        present = svm.predict_proba(X)
    else:
        decision = svm.decision_function(X)
        if decision.ndim == 1:
            decision = np.column_stack([np.zeros_like(decision), decision])
        present = softmax(decision, axis=1)
    out = np.zeros((len(X), len(classes)), dtype=np.float64)
    out[:, np.searchsorted(classes, svm.classes_)] = present
    return out


def n_support_vectors(svm: SVC | CalibratedClassifierCV) -> int:
    """The SVM's support-vector count (of the SVC fitted on all rows when calibrated)."""
    if isinstance(svm, CalibratedClassifierCV):
        svm = svm.calibrated_classifiers_[0].estimator
    return int(svm.n_support_.sum())


class ELMFusion(ClassifierMixin, BaseEstimator):
    """The paper's whole fusion as one classifier: :class:`TwoStageELM`, then an SVM.

    ``fit(X, y, gender=None, groups=None)``: X (n_rows, n_features) are the concatenated
    FC features, ``gender`` each row's gender (needed when ``use_gender``), ``groups``
    each row's speaker (for ``stacking="crossfit"``; each row its own group when None).
    ``stacking="same"`` fits the SVM on ELM-2's scores of its own training rows (the
    paper); ``"crossfit"`` on out-of-fold scores (see the module docstring).
    ``predict_proba`` returns the SVM's class scores (rows sum to 1).
    """

    def __init__(
        self,
        elm1_hidden: int = 100,
        elm2_hidden_per_class: int = 50,
        elm_C: float = 1.0,
        activation: str = "sigmoid",
        standardise: bool = True,
        use_gender: bool = True,
        elm2_input: str = "hidden",
        stacking: str = "same",
        cross_fit_folds: int = 4,
        svm_kernel: str = "rbf",
        svm_C: float = 1.0,
        svm_gamma: str | float = "scale",
        svm_scores: str = "softmax",
        random_state: int | None = None,
        gender_columns: np.ndarray | None = None,
        emotion_columns: np.ndarray | None = None,
        n_members: int = 1,
    ):
        self.gender_columns = gender_columns
        self.emotion_columns = emotion_columns
        self.n_members = n_members
        self.elm1_hidden = elm1_hidden
        self.elm2_hidden_per_class = elm2_hidden_per_class
        self.elm_C = elm_C
        self.activation = activation
        self.standardise = standardise
        self.use_gender = use_gender
        self.elm2_input = elm2_input
        self.stacking = stacking
        self.cross_fit_folds = cross_fit_folds
        self.svm_kernel = svm_kernel
        self.svm_C = svm_C
        self.svm_gamma = svm_gamma
        self.svm_scores = svm_scores
        self.random_state = random_state

    def _elm(self) -> TwoStageELM:
        return TwoStageELM(
            elm1_hidden=self.elm1_hidden,
            elm2_hidden_per_class=self.elm2_hidden_per_class,
            elm_C=self.elm_C,
            activation=self.activation,
            standardise=self.standardise,
            use_gender=self.use_gender,
            elm2_input=self.elm2_input,
            random_state=self.random_state,
            gender_columns=self.gender_columns,
            emotion_columns=self.emotion_columns,
            n_members=self.n_members,
        )

    def fit(self, X, y, gender=None, groups=None) -> ELMFusion:
        """Fit ELM-1, ELM-2 and the SVM (see the class docstring for the arguments)."""
        if self.stacking not in STACKINGS:
            raise ValueError(f"stacking must be one of {list(STACKINGS)}, got {self.stacking!r}")
        if self.svm_scores not in SVM_SCORES:
            raise ValueError(f"svm_scores must be one of {SVM_SCORES}, got {self.svm_scores!r}")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        elm = self._elm().fit(X, y, gender)
        if self.stacking == "same":
            svm_input = elm.predict_proba(X)
            self.cross_fit_splits_ = None
        else:
            rows = np.arange(len(X)) if groups is None else np.asarray(groups)
            crossed = cross_fit_probs(
                self._elm(), X, y, gender, rows, self.cross_fit_folds, elm.classes_
            )
            svm_input = crossed.probs
            self.cross_fit_splits_ = crossed.splits
        svm = make_svm(
            self.svm_kernel, self.svm_C, self.svm_gamma, self.svm_scores, self.random_state
        ).fit(svm_input, y)
        return self._set_parts(elm, svm)

    def _set_parts(self, elm: TwoStageELM, svm: SVC) -> ELMFusion:
        self.elm_, self.svm_ = elm, svm
        self.classes_ = elm.classes_
        return self

    @classmethod
    def from_parts(cls, elm: TwoStageELM, svm: SVC, **params: Any) -> ELMFusion:
        """A fitted fusion from an ELM pair and an SVM fitted apart (the two DVC stages)."""
        fusion = cls(**params)
        fusion.n_features_in_ = elm.n_features_in_
        return fusion._set_parts(elm, svm)

    def predict_proba(self, X) -> np.ndarray:
        """The SVM's class scores on ELM-2's probabilities, shape (n_rows, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return svm_class_scores(self.svm_, self.elm_.predict_proba(X), self.classes_)

    def predict(self, X) -> np.ndarray:
        """The final emotion of each row, shape (n_rows,)."""
        scores = self.predict_proba(X)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]
