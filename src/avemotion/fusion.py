"""The paper's fusion: two ELMs in a row, then an SVM (sections 2.3.3 and 2.4).

Per segment, the last hidden FC layer of each CNN branch (``fc_audio.h5``,
``fc_video.h5``) is standardised on the fold's training rows and the two are
concatenated (one branch alone when ``base.modalities`` has one). Then:

1. **ELM-1** learns gender (2 classes) with ``fusion.elm1_hidden`` hidden nodes;
2. its output layer is dropped and its **hidden layer output** (``transform``) is the
   input of **ELM-2**, which learns the emotions with ``elm2_hidden_per_class`` x C
   hidden nodes;
3. ELM-2's scores go through a softmax (``predict_proba``), and an **SVM** fitted on
   those probability rows gives the final emotion.

:class:`TwoStageELM` is steps 1-2 (with the scaler), :class:`ELMFusion` the whole
system as one scikit-learn classifier. The DVC stages run the same parts in two steps
(:func:`run_fit_elm`, :func:`run_fit_svm`) so that an SVM param reruns only the SVM.

Choices the paper leaves open, made here:

- **Stacking.** The paper fits ELM-1, ELM-2 and the SVM on the same training rows, so
  the SVM learns from ELM-2 scores on rows ELM-2 has already fitted (a leak: they are
  more confident than on unseen rows). Both are computed in every run: ``elm_svm``
  (the paper) and ``elm_svm_crossfit``, whose SVM learns from out-of-fold ELM-2 scores:
  the training rows are split by speaker with ``GroupKFold`` (``cross_fit_folds``) and
  each row is scored by an ELM pair fitted without its speaker; test rows are scored by
  the ELM pair fitted on all training rows, in both systems.
- **ELM-1's hidden layer is not trained.** An ELM's hidden weights are random; only its
  output weights learn. So ELM-2's input, ELM-1's hidden output, does not depend on the
  gender labels at all: as the paper describes it, gender only shapes ELM-1's own
  (discarded) output layer, whose accuracy is reported. ``fusion.elm2_input:
  hidden_and_gender`` appends ELM-1's two gender probabilities to its hidden output, one
  way to let gender reach ELM-2; the default ``hidden`` is the paper's.
- **No gender labels.** With ``fusion.use_gender: false`` ELM-1 is skipped and ELM-2
  reads the standardised features directly.
- **SVM scores.** Clip-level averaging needs class scores per segment. The default
  ``svm_scores: softmax`` takes a softmax over the SVC's one-vs-rest decision function
  (deterministic, cheap; its argmax is the SVC's prediction); ``platt`` calibrates the
  SVC by Platt scaling on 5-fold cross-validated decision values (what
  ``SVC(probability=True)`` did before scikit-learn 1.9 deprecated it: slower, and its
  argmax can disagree with ``SVC.predict``).
- **Pairing audio and video rows** (:func:`pair_rows`): see that function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import h5py
import joblib
import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from avemotion.elm import ACTIVATIONS, ELMClassifier
from avemotion.errors import BadInputError
from avemotion.evaluation import write_predictions
from avemotion.h5store import META_COLUMNS, read_meta
from avemotion.params import section
from avemotion.splits import test_rows, train_rows

MODALITIES = ("audio", "video")
#: How each branch names its augmented copies, and the params list they come from.
AUGMENTATIONS = {"audio": ("snr", "snr_db"), "video": ("rot", "rotation_deg")}
UNKNOWN_GENDERS = frozenset({"unknown", ""})
STACKINGS = {"same": "elm_svm", "crossfit": "elm_svm_crossfit"}
BRANCH_SYSTEMS = ("audio_cnn", "video_cnn", "late_fusion")
ELM2_INPUTS = ("hidden", "hidden_and_gender")
SVM_SCORES = ("softmax", "platt")
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FusionSettings:
    """The ``fusion:`` params (see params.yaml); defaults are the paper's where it has one."""

    elm1_hidden: int = 100
    elm2_hidden_per_class: int = 50
    elm_C: float = 1.0
    activation: str = "sigmoid"
    standardise: bool = True
    use_gender: bool = True
    elm2_input: str = "hidden"
    cross_fit_folds: int = 4
    svm_kernel: str = "rbf"
    svm_C: float = 1.0
    svm_gamma: str | float = "scale"
    svm_scores: str = "softmax"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FusionSettings:
        """Read ``params["fusion"]`` (keys left out take the defaults) and check it."""
        given = dict(params.get("fusion") or {})
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise BadInputError(
                f"params fusion: unknown keys {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        settings = cls(**given)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`BadInputError` naming every ``fusion.*`` value that cannot work."""
        problems = []
        for name in ("elm1_hidden", "elm2_hidden_per_class"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                problems.append(f"fusion.{name}={value!r} must be a positive integer")
        if not isinstance(self.cross_fit_folds, Integral) or self.cross_fit_folds < 2:
            problems.append(f"fusion.cross_fit_folds={self.cross_fit_folds!r} must be >= 2")
        for name in ("elm_C", "svm_C"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not 0 < value < np.inf:
                problems.append(f"fusion.{name}={value!r} must be a positive number")
        if self.activation not in ACTIVATIONS:
            problems.append(f"fusion.activation must be one of {sorted(ACTIVATIONS)}")
        if self.elm2_input not in ELM2_INPUTS:
            problems.append(f"fusion.elm2_input must be one of {list(ELM2_INPUTS)}")
        if self.svm_scores not in SVM_SCORES:
            problems.append(f"fusion.svm_scores must be one of {list(SVM_SCORES)}")
        if self.svm_kernel not in SVM_KERNELS:
            problems.append(f"fusion.svm_kernel must be one of {list(SVM_KERNELS)}")
        gamma = self.svm_gamma
        if not (gamma in ("scale", "auto") or (isinstance(gamma, Real) and gamma > 0)):
            problems.append(f"fusion.svm_gamma={gamma!r} must be scale, auto or a positive number")
        if problems:
            raise BadInputError("; ".join(problems))

    def elm_params(self, random_state: int) -> dict[str, Any]:
        """Keyword arguments of :class:`TwoStageELM`."""
        return {
            "elm1_hidden": self.elm1_hidden,
            "elm2_hidden_per_class": self.elm2_hidden_per_class,
            "elm_C": self.elm_C,
            "activation": self.activation,
            "standardise": self.standardise,
            "use_gender": self.use_gender,
            "elm2_input": self.elm2_input,
            "random_state": random_state,
        }

    def fusion_params(self, random_state: int, stacking: str) -> dict[str, Any]:
        """Keyword arguments of :class:`ELMFusion`."""
        return {
            **self.elm_params(random_state),
            "stacking": stacking,
            "cross_fit_folds": self.cross_fit_folds,
            "svm_kernel": self.svm_kernel,
            "svm_C": self.svm_C,
            "svm_gamma": self.svm_gamma,
            "svm_scores": self.svm_scores,
        }


# --------------------------------------------------------------------------- estimators


class TwoStageELM(BaseEstimator):
    """Standardise -> ELM-1 (gender) -> ELM-1's hidden output -> ELM-2 (emotion).

    ``fit(X, y, gender)`` with X of shape (n_rows, n_features); ``predict_proba(X)`` is
    ELM-2's softmax, shape (n_rows, n_classes), what the SVM reads. With
    ``use_gender=False`` ELM-1 is skipped and ELM-2 reads the standardised features.
    ELM-1 and ELM-2 draw their random hidden layers from two seeds derived from
    ``random_state``.
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
    ):
        self.elm1_hidden = elm1_hidden
        self.elm2_hidden_per_class = elm2_hidden_per_class
        self.elm_C = elm_C
        self.activation = activation
        self.standardise = standardise
        self.use_gender = use_gender
        self.elm2_input = elm2_input
        self.random_state = random_state

    def fit(self, X, y, gender=None) -> TwoStageELM:
        """Fit the scaler, ELM-1 on ``gender`` (n_rows,) and ELM-2 on ``y`` (n_rows,)."""
        if self.elm2_input not in ELM2_INPUTS:
            raise ValueError(f"elm2_input must be one of {ELM2_INPUTS}, got {self.elm2_input!r}")
        X = check_array(X, dtype=(np.float64, np.float32))
        y = np.asarray(y)
        check_classification_targets(y)
        self.n_features_in_ = X.shape[1]
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=2)
        self.scaler_ = StandardScaler().fit(X) if self.standardise else None
        scaled = self._scaled(X)
        self.elm1_ = None
        if self.use_gender:
            if gender is None:
                raise ValueError("use_gender=True needs the gender of every training row")
            gender = np.asarray(gender).astype(str)
            if len(gender) != len(X):
                raise ValueError(f"{len(gender)} genders for {len(X)} rows")
            unknown = np.isin(gender, list(UNKNOWN_GENDERS))
            if unknown.any():
                raise ValueError(
                    f"{int(unknown.sum())} training rows have unknown gender; ELM-1 learns "
                    "gender: give genders or set use_gender=False"
                )
            self.elm1_ = ELMClassifier(
                n_hidden=self.elm1_hidden,
                activation=self.activation,
                C=self.elm_C,
                random_state=int(seeds[0]),
            ).fit(scaled, gender)
        n_classes = len(np.unique(y))
        self.elm2_ = ELMClassifier(
            n_hidden=self.elm2_hidden_per_class * n_classes,
            activation=self.activation,
            C=self.elm_C,
            random_state=int(seeds[1]),
        ).fit(self._elm2_input(scaled), y)
        self.classes_ = self.elm2_.classes_
        return self

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return X if self.scaler_ is None else self.scaler_.transform(X)

    def _elm2_input(self, scaled: np.ndarray) -> np.ndarray:
        if self.elm1_ is None:
            return scaled
        hidden = self.elm1_.transform(scaled)
        if self.elm2_input == "hidden_and_gender":
            return np.hstack([hidden, self.elm1_.predict_proba(scaled)])
        return hidden

    def elm2_features(self, X) -> np.ndarray:
        """What ELM-2 reads for X: ELM-1's hidden output (n_rows, elm1_hidden), or the
        standardised features when ELM-1 is skipped."""
        check_is_fitted(self)
        return self._elm2_input(self._scaled(check_array(X, dtype=(np.float64, np.float32))))

    def predict_proba(self, X) -> np.ndarray:
        """ELM-2's softmaxed scores, shape (n_rows, n_classes): the SVM's input."""
        return self.elm2_.predict_proba(self.elm2_features(X))

    def predict(self, X) -> np.ndarray:
        """ELM-2's emotion for each row, shape (n_rows,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_gender(self, X) -> np.ndarray:
        """ELM-1's gender for each row, shape (n_rows,); needs ``use_gender=True``."""
        check_is_fitted(self)
        if self.elm1_ is None:
            raise ValueError("ELM-1 was skipped (use_gender=False): no gender prediction")
        return self.elm1_.predict(self._scaled(check_array(X, dtype=(np.float64, np.float32))))


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
    ):
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


# --------------------------------------------------------------------------- branch tables


@dataclass
class BranchTable:
    """One ``fc_<modality>.h5``: features ``x`` (n_rows, dim), softmax ``probs``
    (n_rows, C) and the :data:`META_COLUMNS`."""

    modality: str
    path: Path
    x: np.ndarray
    probs: np.ndarray
    meta: dict[str, np.ndarray]


def read_branch(path: str | Path, modality: str) -> BranchTable:
    """Read a branch's FC-feature table (written by the extract_features stage)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"{modality} FC features not found; run the extract_features stage "
            f"(base.modalities lists {modality})",
            path,
        )
    try:
        with h5py.File(path, "r") as handle:
            if "probs" not in handle:
                raise BadInputError("has no /probs dataset; rerun extract_features", path)
            x = handle["x"][:]
            probs = handle["probs"][:]
    except OSError as error:
        raise BadInputError(f"cannot read: {error}", path) from None
    if x.ndim != 2 or len(probs) != len(x):
        raise BadInputError(f"/x of shape {x.shape} and /probs of {probs.shape} do not fit", path)
    return BranchTable(modality, path, x, probs, read_meta(path))


def augmentation_index(table: BranchTable, values: Sequence[float]) -> np.ndarray:
    """Per row, 0 for an original and k for the copy made with ``values[k - 1]``
    (``augment.snr_db`` for audio, ``augment.rotation_deg`` for video)."""
    prefix = AUGMENTATIONS[table.modality][0]
    known = {"": 0} | {f"{prefix}{float(v):g}": k for k, v in enumerate(values, start=1)}
    names = pd.Series(table.meta["augmentation"], dtype=object)
    index = names.map(known)
    if index.isna().any():
        strange = sorted(set(names[index.isna()]))
        param = AUGMENTATIONS[table.modality][1]
        raise BadInputError(
            f"augmentations {strange[:5]} are not in augment.{param}={list(values)}; "
            "rerun the feature stages",
            table.path,
        )
    return index.to_numpy(dtype=np.int64)


def pair_rows(
    audio: BranchTable, video: BranchTable, augment: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Match audio rows to video rows; returns their row indices (n_pairs,) each and counts.

    The rule:

    - an original row pairs with the other branch's original row of the same
      ``(clip_id, segment)``;
    - the k-th augmented copy of a segment in one branch (``augment.snr_db[k]``) pairs
      with the k-th of the other (``augment.rotation_deg[k]``), as the paper lists the
      two "respectively"; when the other branch has no k-th copy of that segment (a
      shorter list, or a copy left out), it pairs with that branch's original row;
    - a row with nothing to pair with (a segment the other branch rejected, e.g. no face
      found) is left out and counted, by branch and kind, in the returned counts.

    Pairs come in the audio table's row order.
    """
    keys = ["clip_id", "segment"]
    frames = {}
    for table in (audio, video):
        values = augment.get(AUGMENTATIONS[table.modality][1]) or []
        frame = pd.DataFrame(
            {
                "clip_id": table.meta["clip_id"],
                "segment": table.meta["segment"],
                "k": augmentation_index(table, values),
                "row": np.arange(len(table.x)),
            }
        )
        if frame.duplicated([*keys, "k"]).any():
            twice = frame.loc[frame.duplicated([*keys, "k"]), keys].head(3).values.tolist()
            raise BadInputError(
                f"rows for the same segment and copy appear twice: {twice}", table.path
            )
        frames[table.modality] = frame
    a, v = frames["audio"], frames["video"]
    a_orig, v_orig = a[a.k == 0], v[v.k == 0]
    originals = a_orig.merge(v_orig, on=keys, suffixes=("_a", "_v"))[["row_a", "row_v"]]
    copies = a[a.k > 0].merge(v[v.k > 0], on=[*keys, "k"], how="outer", suffixes=("_a", "_v"))
    copies = copies.merge(
        a_orig[[*keys, "row"]].rename(columns={"row": "orig_a"}), on=keys, how="left"
    )
    copies = copies.merge(
        v_orig[[*keys, "row"]].rename(columns={"row": "orig_v"}), on=keys, how="left"
    )
    own_a, own_v = copies["row_a"].notna(), copies["row_v"].notna()
    copies["row_a"] = copies["row_a"].fillna(copies["orig_a"])
    copies["row_v"] = copies["row_v"].fillna(copies["orig_v"])
    paired = copies["row_a"].notna() & copies["row_v"].notna()
    pairs = pd.concat([originals, copies.loc[paired, ["row_a", "row_v"]]], ignore_index=True)
    pairs = pairs.astype(np.int64).sort_values(["row_a", "row_v"], kind="stable")

    a_left = a_orig[~a_orig.set_index(keys).index.isin(v_orig.set_index(keys).index)]
    v_left = v_orig[~v_orig.set_index(keys).index.isin(a_orig.set_index(keys).index)]
    counts = {
        "audio_rows": len(a),
        "video_rows": len(v),
        "pairs": len(pairs),
        "audio_original_rows_left_out": len(a_left),
        "video_original_rows_left_out": len(v_left),
        "audio_copies_left_out": int((own_a & ~paired).sum()),
        "video_copies_left_out": int((own_v & ~paired).sum()),
        "copies_paired_with_an_original": int((paired & (own_a ^ own_v)).sum()),
        "clips_left_out": sorted(set(a_left["clip_id"]) | set(v_left["clip_id"])),
    }
    return pairs["row_a"].to_numpy(), pairs["row_v"].to_numpy(), counts


@dataclass
class FusedTable:
    """The rows the fusion works on: concatenated features, each branch's softmax, meta.

    ``x`` (n_rows, sum of branch dims) float32; ``probs[modality]`` (n_rows, C);
    ``meta`` the :data:`META_COLUMNS` (``augmentation`` joins both branches' names with
    ``+``); ``pairing`` the counts of :func:`pair_rows` (empty for one branch).
    """

    modalities: tuple[str, ...]
    x: np.ndarray
    probs: dict[str, np.ndarray]
    meta: dict[str, np.ndarray]
    pairing: dict[str, Any]


def fuse_tables(tables: Sequence[BranchTable], augment: Mapping[str, Any]) -> FusedTable:
    """One branch as it is, or audio and video paired by :func:`pair_rows`."""
    if len(tables) == 1:
        (table,) = tables
        return FusedTable((table.modality,), table.x, {table.modality: table.probs}, table.meta, {})
    by_modality = {t.modality: t for t in tables}
    audio, video = by_modality["audio"], by_modality["video"]
    row_a, row_v, counts = pair_rows(audio, video, augment)
    for column in ("label", "speaker", "fold"):
        if np.any(audio.meta[column][row_a] != video.meta[column][row_v]):
            raise BadInputError(
                f"paired rows disagree on {column} with {video.path}; rebuild both from "
                "the same data/index.csv",
                audio.path,
            )
    meta = {column: audio.meta[column][row_a] for column in META_COLUMNS}
    meta["augmented"] = audio.meta["augmented"][row_a] | video.meta["augmented"][row_v]
    names = pd.Series(audio.meta["augmentation"][row_a]) + "+" + video.meta["augmentation"][row_v]
    meta["augmentation"] = names.str.strip("+").to_numpy(dtype=object)
    x = np.hstack([audio.x[row_a], video.x[row_v]]).astype(np.float32, copy=False)
    probs = {"audio": audio.probs[row_a], "video": video.probs[row_v]}
    return FusedTable(("audio", "video"), x, probs, meta, counts)


# --------------------------------------------------------------------------- the stages


@dataclass(frozen=True)
class FusionPaths:
    """Where one fold's fusion reads and writes (the DVC stages' deps and outs)."""

    features: dict[str, Path]
    elm_model: Path
    svm_models: dict[str, Path]
    scores: Path
    predictions: Path
    metrics: Path

    @classmethod
    def default(cls, fold: int, modalities: Sequence[str] = MODALITIES) -> FusionPaths:
        return cls(
            features={m: Path(f"data/features/fold{fold}/fc_{m}.h5") for m in modalities},
            elm_model=Path(f"models/fusion/fold{fold}/elm.joblib"),
            svm_models={
                system: Path(f"models/fusion/fold{fold}/{system}.joblib")
                for system in STACKINGS.values()
            },
            scores=Path(f"data/fusion/fold{fold}/elm_scores.npz"),
            predictions=Path(f"data/predictions/fold{fold}"),
            metrics=Path(f"metrics/fusion/fold{fold}.json"),
        )


def run_modalities(params: Mapping[str, Any]) -> tuple[str, ...]:
    """``base.modalities``, checked, in the order audio, video."""
    given = list(section(dict(params), "base").get("modalities") or MODALITIES)
    unknown = sorted(set(given) - set(MODALITIES))
    if unknown or not given:
        raise BadInputError(f"base.modalities={given} must be a non-empty subset of {MODALITIES}")
    return tuple(m for m in MODALITIES if m in given)


def n_classes_of(params: Mapping[str, Any], labels: np.ndarray) -> int:
    """``len(data.classes)``, or one more than the largest label when it is null."""
    classes = (params.get("data") or {}).get("classes")
    return len(classes) if classes else int(np.max(labels, initial=-1)) + 1


def expand_columns(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores over ``classes`` (a subset of 0..C-1) as (n_rows, n_classes), 0 elsewhere."""
    out = np.zeros((len(probs), n_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = probs
    return out


def check_genders(
    meta: Mapping[str, np.ndarray], rows: np.ndarray, params: Mapping[str, Any]
) -> None:
    """Raise a :class:`BadInputError` naming the clips without gender, when ELM-1 needs it."""
    gender = np.asarray(meta["gender"][rows]).astype(str)
    unknown = np.isin(gender, list(UNKNOWN_GENDERS))
    if unknown.any():
        clips = sorted(set(meta["clip_id"][rows][unknown]))
        dataset = (params.get("data") or {}).get("dataset", "this dataset")
        raise BadInputError(
            f"{len(clips)} training clips of dataset {dataset} have unknown gender (e.g. "
            f"{', '.join(clips[:3])}); ELM-1 learns gender: set fusion.use_gender: false, or "
            "give the genders via data.options"
        )


def cross_fit_groups(meta: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, str]:
    """The groups of the cross-fitting: speakers, or clips when there are fewer than 2
    training speakers (augmented copies always stay with their clip)."""
    speakers = np.asarray(meta["speaker"][rows]).astype(str)
    if len(np.unique(speakers)) >= 2:
        return speakers, "speaker"
    clips = np.asarray(meta["clip_id"][rows]).astype(str)
    if len(np.unique(clips)) < 2:
        raise BadInputError("cross-fitting needs at least 2 training clips in this fold")
    return clips, "clip"


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    return float(np.mean(y_true == y_pred)) if len(y_true) else None


def run_fit_elm(params: Mapping[str, Any], fold: int, paths: FusionPaths) -> dict[str, Any]:
    """Stage fit_elm: fit the ELM pair on fold ``fold``'s training rows, cross-fit it, and
    write the ELM-2 scores, the branch-only and late-fusion predictions, and the fold's
    fusion metrics (returned)."""
    settings = FusionSettings.from_params(params)
    seed = int(section(dict(params), "base").get("seed", 42))
    modalities = run_modalities(params)
    tables = [read_branch(paths.features[m], m) for m in modalities]
    fused = fuse_tables(tables, params.get("augment") or {})
    meta = fused.meta
    train = np.flatnonzero(train_rows(meta["fold"], fold))
    test = np.flatnonzero(test_rows(meta["fold"], meta["augmented"], fold))
    if len(train) == 0 or len(test) == 0:
        raise BadInputError(
            f"fold {fold} has {len(train)} training and {len(test)} test rows after pairing "
            f"{' and '.join(modalities)}",
            paths.features[modalities[0]],
        )
    if settings.use_gender:
        check_genders(meta, train, params)
    n_classes = n_classes_of(params, meta["label"])
    y, gender = meta["label"], np.asarray(meta["gender"]).astype(str)
    elm = TwoStageELM(**settings.elm_params(seed)).fit(fused.x[train], y[train], gender[train])
    groups, group_kind = cross_fit_groups(meta, train)
    crossed = cross_fit_probs(
        elm, fused.x[train], y[train], gender[train], groups, settings.cross_fit_folds, elm.classes_
    )
    train_same = elm.predict_proba(fused.x[train])
    test_probs = elm.predict_proba(fused.x[test])

    paths.elm_model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(elm, paths.elm_model)
    paths.scores.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        paths.scores,
        classes=elm.classes_,
        train_label=y[train],
        train_same=train_same,
        train_crossfit=crossed.probs,
        test=test_probs,
        test_clip_id=np.asarray(meta["clip_id"][test], dtype=str),
        test_segment=meta["segment"][test],
        test_label=y[test],
    )
    written = write_branch_predictions(fused, test, n_classes, paths.predictions)

    gender_accuracy = None
    if elm.elm1_ is not None:
        known = test[~np.isin(gender[test], list(UNKNOWN_GENDERS))]
        if len(known):
            gender_accuracy = _accuracy(gender[known], elm.predict_gender(fused.x[known]))
    test_set = set(zip(meta["clip_id"][test], meta["segment"][test], strict=True))
    pairing = dict(fused.pairing)
    if pairing:
        pairing["test_rows_left_out"] = _test_rows_left_out(tables, fold, test_set)
    summary = {
        "fold": fold,
        "modalities": list(modalities),
        "feature_dim": int(fused.x.shape[1]),
        "n_train_rows": len(train),
        "n_train_augmented_rows": int(meta["augmented"][train].sum()),
        "n_test_rows": len(test),
        "n_test_clips": len(set(meta["clip_id"][test])),
        "use_gender": settings.use_gender,
        "elm1_gender_accuracy": gender_accuracy,
        "elm1_gender_classes": [] if elm.elm1_ is None else elm.elm1_.classes_.tolist(),
        "elm2_train_accuracy_same": _accuracy(y[train], elm.classes_[train_same.argmax(1)]),
        "elm2_train_accuracy_crossfit": _accuracy(y[train], elm.classes_[crossed.probs.argmax(1)]),
        "elm2_test_accuracy": _accuracy(y[test], elm.classes_[test_probs.argmax(1)]),
        "cross_fit": {"groups": group_kind, "n_splits": len(crossed.splits)},
        "predictions_written": written,
        "pairing": pairing,
        "settings": asdict(settings),
    }
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _test_rows_left_out(tables: Sequence[BranchTable], fold: int, paired: set) -> int:
    """Test segments (original rows of ``fold``) in one branch's table but not fused."""
    left = set()
    for table in tables:
        m = table.meta
        rows = test_rows(m["fold"], m["augmented"], fold)
        left |= set(zip(m["clip_id"][rows], m["segment"][rows], strict=True)) - paired
    return len(left)


def write_branch_predictions(
    fused: FusedTable, test: np.ndarray, n_classes: int, folder: Path
) -> dict[str, int]:
    """``audio_cnn``, ``video_cnn`` and ``late_fusion`` tables for the test rows.

    All are written on the same (fused) test rows, so every system is scored on the
    same segments; a system whose branch did not run gets a header-only table, which
    keeps the stage's outputs the same whatever ``base.modalities`` holds.
    """
    meta = fused.meta
    keys = (meta["clip_id"][test], meta["segment"][test], meta["label"][test])
    empty = (np.array([], dtype=object), np.array([], dtype=np.int64), np.array([], np.int64))
    tables = {
        "audio_cnn": fused.probs.get("audio"),
        "video_cnn": fused.probs.get("video"),
        "late_fusion": (
            (fused.probs["audio"] + fused.probs["video"]) / 2.0 if len(fused.probs) == 2 else None
        ),
    }
    written = {}
    for system, probs in tables.items():
        if probs is None:
            written[system] = write_predictions(
                folder / f"{system}.csv", *empty, np.zeros((0, n_classes))
            )
        else:
            p = np.asarray(probs[test], dtype=np.float64)
            written[system] = write_predictions(folder / f"{system}.csv", *keys, p)
    return written


def run_fit_svm(params: Mapping[str, Any], fold: int, paths: FusionPaths) -> dict[str, Any]:
    """Stage fit_svm: fit the SVM on ELM-2's training scores, once per stacking, and write
    ``elm_svm.csv`` and ``elm_svm_crossfit.csv`` and the assembled models; returns their
    training accuracies."""
    settings = FusionSettings.from_params(params)
    seed = int(section(dict(params), "base").get("seed", 42))
    for path in (paths.scores, paths.elm_model):
        if not path.is_file():
            raise BadInputError("not found; run the fit_elm stage first", path)
    scores = np.load(paths.scores, allow_pickle=False)
    elm = joblib.load(paths.elm_model)
    classes, y_train = scores["classes"], scores["train_label"]
    n_classes = n_classes_of(params, np.concatenate([y_train, scores["test_label"]]))
    keys = (scores["test_clip_id"], scores["test_segment"], scores["test_label"])
    summary = {}
    for stacking, system in STACKINGS.items():
        svm = make_svm(
            settings.svm_kernel, settings.svm_C, settings.svm_gamma, settings.svm_scores, seed
        ).fit(scores[f"train_{stacking}"], y_train)
        test = svm_class_scores(svm, scores["test"], classes)
        write_predictions(
            paths.predictions / f"{system}.csv", *keys, expand_columns(test, classes, n_classes)
        )
        model = ELMFusion.from_parts(elm, svm, **settings.fusion_params(seed, stacking))
        paths.svm_models[system].parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, paths.svm_models[system])
        summary[system] = {
            "svm_train_accuracy": _accuracy(y_train, svm.predict(scores[f"train_{stacking}"])),
            "test_accuracy": _accuracy(keys[2], classes[test.argmax(1)]),
            "n_support_vectors": n_support_vectors(svm),
        }
    return summary
