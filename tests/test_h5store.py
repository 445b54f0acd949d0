"""Segment tables: rows stay aligned, and an interrupted write leaves nothing behind."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from avemotion.h5store import META_COLUMNS, SegmentWriter, read_attrs, read_meta


def rows(n: int, clip: str, augmented: bool = False) -> dict:
    return {
        "clip_id": [clip] * n,
        "segment": list(range(n)),
        "start_s": [2.0 * i for i in range(n)],
        "speaker": ["07"] * n,
        "gender": ["female"] * n,
        "emotion": ["sad"] * n,
        "label": [3] * n,
        "fold": [1] * n,
        "augmented": [augmented] * n,
        "augmentation": ["snr15" if augmented else ""] * n,
    }


def test_rows_and_tensors_stay_aligned(tmp_path):
    path = tmp_path / "f.h5"
    first, second = np.zeros((2, 3, 4)), np.ones((3, 3, 4))
    with SegmentWriter(path, (3, 4), attrs={"params": {"a": 1}, "padding": "pad"}) as writer:
        writer.append(first, rows(2, "c1"))
        writer.append(second, rows(3, "c2", augmented=True))
    meta = read_meta(path)
    assert set(meta) == set(META_COLUMNS)
    assert meta["clip_id"].tolist() == ["c1", "c1", "c2", "c2", "c2"]
    assert meta["speaker"].tolist() == ["07"] * 5
    assert meta["augmented"].tolist() == [False, False, True, True, True]
    assert read_attrs(path) == {"params": {"a": 1}, "padding": "pad", "n_rows": 5}
    with h5py.File(path) as handle:
        assert handle["x"].shape == (5, 3, 4) and handle["x"].chunks == (1, 3, 4)
        assert handle["x"][2:].sum() == 36


def test_interrupted_writer_leaves_no_file(tmp_path):
    path = tmp_path / "f.h5"
    path.write_bytes(b"an old, complete-looking output")
    with pytest.raises(RuntimeError), SegmentWriter(path, (2,)) as writer:
        writer.append(np.zeros((1, 2)), rows(1, "c1"))
        raise RuntimeError("killed")
    assert not path.exists()
    assert not (tmp_path / "f.h5.partial").exists()


def test_misaligned_rows_are_refused(tmp_path):
    with SegmentWriter(tmp_path / "f.h5", (2,)) as writer:
        bad = rows(2, "c1")
        bad["label"] = [1]
        with pytest.raises(ValueError, match="column label has 1 values for 2 rows"):
            writer.append(np.zeros((2, 2)), bad)
        with pytest.raises(ValueError, match="do not fit"):
            writer.append(np.zeros((2, 3)), rows(2, "c1"))
        writer.append(np.zeros((1, 2)), rows(1, "c2"))
    meta = read_meta(tmp_path / "f.h5")
    assert meta["clip_id"].tolist() == ["c2"]  # the refused rows left nothing half-written


def test_buffered_rows_are_written_in_blocks_and_on_close(tmp_path, monkeypatch):
    """Rows wait in memory up to WRITE_BUFFER_BYTES, then go to the file in one write; the
    rest are written when the writer closes. The table equals one written row by row."""
    from avemotion import h5store

    monkeypatch.setattr(h5store, "WRITE_BUFFER_BYTES", 3 * 2 * 4)  # three float32 rows of 2
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 2)).astype(np.float32) for n in (1, 1, 2, 1, 1)]
    path = tmp_path / "f.h5"
    with SegmentWriter(path, (2,)) as writer:
        written = []
        for i, block in enumerate(blocks):
            writer.append(block, rows(len(block), f"c{i}"))
            written.append(writer.rows_written)
        assert writer.n_rows == 6
    assert written == [0, 0, 4, 4, 4]  # the block of two filled the buffer: 4 rows went out
    meta = read_meta(path)
    assert meta["clip_id"].tolist() == ["c0", "c1", "c2", "c2", "c3", "c4"]
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(handle["x"][:], np.concatenate(blocks))
        assert handle.attrs["n_rows"] == 6
