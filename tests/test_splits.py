"""Split protocols: speaker-independent ones never share a speaker; augmented rows never test."""

from __future__ import annotations

import numpy as np
import pytest

from avemotion.errors import BadInputError
from avemotion.splits import PROTOCOLS, assign_folds, augment_mask, test_rows, train_rows


@pytest.fixture
def corpus():
    speakers = np.repeat([f"s{i:02d}" for i in range(10)], 24)
    labels = np.tile(np.arange(4), 60)
    return labels, speakers


def folds_of(protocol, labels, speakers, **kwargs):
    return assign_folds(labels, speakers, protocol=protocol, n_folds=4, seed=3, **kwargs)


@pytest.mark.parametrize("protocol", ["speaker", "loso"])
def test_speaker_independent_protocols_never_share_a_speaker(corpus, protocol):
    labels, speakers = corpus
    folds = folds_of(protocol, labels, speakers)
    assert (folds >= 0).all()
    for fold in np.unique(folds):
        train, test = set(speakers[folds != fold]), set(speakers[folds == fold])
        assert train and test and not train & test
    assert len(np.unique(folds)) == (4 if protocol == "speaker" else 10)


def test_speaker_folds_are_stratified_by_emotion(corpus):
    labels, speakers = corpus
    folds = folds_of("speaker", labels, speakers)
    for fold in np.unique(folds):
        counts = np.bincount(labels[folds == fold], minlength=4)
        assert counts.min() == counts.max()


def test_fixed_puts_exactly_the_listed_speakers_in_test(corpus):
    labels, speakers = corpus
    folds = folds_of("fixed", labels, speakers, test_speakers=["s03", "s07"])
    assert set(speakers[folds == 0]) == {"s03", "s07"}
    assert set(speakers[folds == -1]) == set(speakers) - {"s03", "s07"}
    assert set(np.unique(folds)) == {-1, 0}


def test_fixed_uses_given_folds_and_rejects_unknown_speakers(corpus):
    labels, speakers = corpus
    given = np.where(np.isin(speakers, ["s00", "s01"]), 0, np.where(speakers == "s02", 1, -1))
    assert (folds_of("fixed", labels, speakers, given_folds=given) == given).all()
    with pytest.raises(BadInputError, match=r"\['zz'\] are not speakers"):
        folds_of("fixed", labels, speakers, test_speakers=["zz"])
    with pytest.raises(BadInputError, match="needs split.test_speakers"):
        folds_of("fixed", labels, speakers)


def test_random_is_the_papers_70_30_split(corpus):
    labels, speakers = corpus
    folds = folds_of("random", labels, speakers, test_size=0.3)
    assert set(np.unique(folds)) == {-1, 0}
    assert (folds == 0).sum() == 72
    assert set(np.bincount(labels[folds == 0])) == {18}


def test_kfold_covers_every_clip_once(corpus):
    labels, speakers = corpus
    folds = folds_of("kfold", labels, speakers)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3]
    assert set(np.bincount(folds)) == {60}


def test_speaker_protocol_needs_enough_speakers():
    with pytest.raises(BadInputError, match="at least n_folds=4 speakers, found 2"):
        assign_folds(np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"]), "speaker", n_folds=4)


def test_unknown_protocol():
    with pytest.raises(BadInputError, match="unknown split.protocol 'leave_two_out'"):
        assign_folds(np.array([0, 1]), np.array(["a", "b"]), "leave_two_out")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_augmented_rows_only_ever_train(corpus, protocol):
    labels, speakers = corpus
    extra = {"test_speakers": ["s05"]} if protocol == "fixed" else {}
    clip_folds = folds_of(protocol, labels, speakers, **extra)
    # a segment table: each clip's original row plus one augmented copy where allowed
    allowed = augment_mask(clip_folds)
    fold = np.concatenate([clip_folds, clip_folds[allowed]])
    augmented = np.concatenate([np.zeros(len(clip_folds), bool), np.ones(allowed.sum(), bool)])
    for test_fold in np.unique(clip_folds[clip_folds >= 0]):
        test = test_rows(fold, augmented, test_fold)
        train = train_rows(fold, test_fold)
        assert not augmented[test].any()
        assert test.sum() == (clip_folds == test_fold).sum()
        assert not (train & test).any()
    if protocol in ("random", "fixed"):
        assert not allowed[clip_folds == 0].any()  # a single split's test clips get no copies
        assert allowed[clip_folds == -1].all()
    else:
        assert allowed.all()  # every clip trains in some fold
