"""The segment rule both branches share, and the one reader of its params."""

from __future__ import annotations

import re

import numpy as np
import pytest

from avemotion.audio.frontend import FrontEndSettings
from avemotion.audio.mfcc import MfccSettings
from avemotion.errors import BadInputError
from avemotion.params import validate_params
from avemotion.segments import SegmentParams, segment_starts


@pytest.mark.parametrize(
    ("duration_s", "last_segment", "expected"),
    [
        (4.0, "pad", [0.0, 2.0]),  # exactly two full segments, nothing partial
        (4.0, "drop", [0.0, 2.0]),
        (3.3, "pad", [0.0, 2.0]),  # 1.3 s remain >= min_segment_s: padded
        (3.3, "drop", [0.0]),
        (2.6, "pad", [0.0]),  # 0.6 s remain < min_segment_s: dropped even with pad
        (1.9, "pad", [0.0]),  # a CREMA-D clip shorter than one segment
        (1.9, "drop", []),
        (0.3, "pad", []),  # too short to be a segment at all
    ],
)
def test_segment_starts(duration_s, last_segment, expected):
    starts = segment_starts(duration_s, 2.0, 2.0, last_segment, min_segment_s=1.0)
    assert starts.tolist() == expected


def test_overlapping_hop():
    assert segment_starts(5.0, 2.0, 1.0, "drop").tolist() == [0.0, 1.0, 2.0, 3.0]
    assert segment_starts(5.5, 2.0, 1.0, "pad", min_segment_s=1.0).tolist() == [0, 1, 2, 3, 4]


def test_float_durations_at_exact_multiples_do_not_lose_a_segment():
    duration = 0.1 * 60  # 6.000000000000001 or 5.999999999999999 depending on arithmetic
    assert len(segment_starts(duration, 2.0, 2.0, "drop")) == 3
    assert len(segment_starts(np.nextafter(6.0, 0), 2.0, 2.0, "drop")) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="last_segment"):
        segment_starts(3.0, last_segment="repeat")
    with pytest.raises(ValueError, match="positive"):
        segment_starts(3.0, hop_s=0)


def test_segment_params_are_read_once_for_every_branch():
    """The audio and video front-ends and the MFCC baseline read the same ``base:`` keys."""
    tree = {"base": {"segment_s": "1.5", "hop_s": 1, "last_segment": "drop"}, "audio": {}}
    params = validate_params(tree)
    segments = SegmentParams.from_params(params)
    assert segments == SegmentParams(1.5, 1.0, "drop", 1.0)
    assert FrontEndSettings.from_params(params).segments == segments
    assert MfccSettings.from_params(params).segments == segments
    assert segments.starts(3.2).tolist() == [0.0, 1.0]
    assert segments.no_segment_reason(1.2).startswith("no analysis segment: 1.20 s")


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ({"segment_s": 0}, "`base.segment_s` = 0: should be greater than 0"),
        ({"hop_s": "x"}, "`base.hop_s` = 'x': should be a valid number"),
        ({"last_segment": "keep"}, "`base.last_segment` = 'keep': should be 'pad' or 'drop'"),
        ({"min_segment_s": -1}, "`base.min_segment_s` = -1: should be greater than or equal to 0"),
    ],
)
def test_bad_segment_params_name_their_key(base, message):
    """The params schema refuses a bad segment key, in one line that names it."""
    with pytest.raises(BadInputError, match=re.escape(message)) as refused:
        validate_params({"base": base})
    assert "\n" not in str(refused.value)
