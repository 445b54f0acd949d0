"""``base.backend: dask``: the front-ends on a Dask cluster write what the process pool
writes, in the same order, and survive a worker that dies mid-run.

Every cluster listens on 127.0.0.1 only and is closed when its test (or this module)
ends, failed or not; each test is cut off after :data:`TEST_TIMEOUT_S` with a traceback.
"""

from __future__ import annotations

import faulthandler
import functools
import os
from pathlib import Path

import h5py
import pandas as pd
import pytest

from avemotion.audio.frontend import build_audio_features
from avemotion.demo import generate_demo
from avemotion.h5store import table_differences
from avemotion.index import build_index
from avemotion.parallel import IN_FLIGHT_PER_JOB, Workers, map_clip_batches, map_clips
from avemotion.params import Params, validate_params
from avemotion.rejects import read_rejects
from avemotion.video import build_visual_tensors, extract_keyframes

distributed = pytest.importorskip("distributed")

#: A hung cluster ends the run with every thread's traceback instead of blocking CI.
TEST_TIMEOUT_S = 120
CLUSTER = {
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "dashboard_address": None,
    "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
}


@pytest.fixture(autouse=True)
def _bounded_in_time():
    faulthandler.dump_traceback_later(TEST_TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster that stands for a remote one (``base.dask_scheduler``), with
    Dask's default worker settings. Its nannies write their workers' variables into this
    process's environment; the tests after this module get it back as it was."""
    environ = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=2, **CLUSTER) as running:
            yield running
    finally:
        os.environ.clear()
        os.environ.update(environ)


def run_params(root: Path, **base) -> Params:
    """The params the front-ends read: 2 s segments, one noisy and one rotated copy."""
    return validate_params(
        {
            "base": {"n_jobs": 2, **base},
            "demo": {
                "n_speakers": 2,
                "takes_per_emotion": 2,
                "emotions": ["happy", "sad"],
                "min_duration_s": 2.4,
                "max_duration_s": 4.2,
            },
            "data": {"root": str(root), "classes": ["happy", "sad"]},
            "split": {"protocol": "kfold", "n_folds": 2, "folds": [0, 1]},
            "augment": {"snr_db": [20], "rotation_deg": [4]},
        }
    )


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory) -> pd.DataFrame:
    """8 demo clips, indexed as the index stage does, then two that broke after indexing:
    one emptied, one cut to a third of its bytes."""
    root = tmp_path_factory.mktemp("demo")
    params = run_params(root)
    generate_demo(root, params.demo, n_jobs=2)
    index = build_index(params.data, params.split, params.base.modalities, 2).clips
    broken = tmp_path_factory.mktemp("broken")
    rows = []
    for name, keep in (("emptied", 0), ("cut", 1 / 3)):
        path = broken / f"{name}.mp4"
        data = Path(index.path[0]).read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        rows.append(index.iloc[0].to_dict() | {"clip_id": name, "path": str(path)})
    return pd.concat([index, pd.DataFrame(rows)], ignore_index=True)


def assert_same_table(first: Path, second: Path) -> None:
    """Every dataset equal array for array (values, dtype, shape) and every file attribute
    equal: the tables hold no timings."""
    assert table_differences(first, second) == []


def assert_same_rejects(first: Path, second: Path) -> list:
    """The same clips rejected for the same reasons, in the same order; returns them."""
    ours, theirs = read_rejects(first), read_rejects(second)
    assert [(r.clip_id, r.reason) for r in ours] == [(r.clip_id, r.reason) for r in theirs]
    return ours


# ------------------------------------------------------------------ the front-ends


def test_audio_front_end_on_a_local_dask_cluster_writes_the_pool_s_table(demo_index, tmp_path):
    """No scheduler given: a LocalCluster of n_jobs workers is started for the map."""
    written = {}
    for backend in ("processes", "dask"):
        params = run_params(tmp_path, backend=backend)
        out = tmp_path / backend
        summary = build_audio_features(demo_index, params, out / "audio.h5", out / "rejects.csv")
        written[backend] = summary
    assert written["dask"] == written["processes"]
    assert written["dask"]["rows"] > len(demo_index)  # 2 s segments and their noisy copies
    assert_same_table(tmp_path / "processes" / "audio.h5", tmp_path / "dask" / "audio.h5")
    rejects = assert_same_rejects(
        tmp_path / "processes" / "rejects.csv", tmp_path / "dask" / "rejects.csv"
    )
    # the clips that raise BadInputError on a worker are rejects, and the rest are rows
    assert {r.clip_id for r in rejects} == {"emptied", "cut"}
    assert rejects[0].reason == "zero bytes"


def test_video_front_end_on_a_dask_scheduler_writes_the_pool_s_tables(
    demo_index, tmp_path, cluster
):
    """Keyframes and visual tensors through ``base.dask_scheduler``."""
    address = cluster.scheduler_address
    for backend, scheduler in (("processes", None), ("dask", address)):
        params = run_params(tmp_path, backend=backend, dask_scheduler=scheduler)
        out = tmp_path / backend
        extract_keyframes(demo_index, params, out / "keyframes.h5", out / "rejects.csv")
        build_visual_tensors(out / "keyframes.h5", params, out / "video.h5")
    for table in ("keyframes.h5", "video.h5"):
        assert_same_table(tmp_path / "processes" / table, tmp_path / "dask" / table)
    rejects = assert_same_rejects(
        tmp_path / "processes" / "rejects.csv", tmp_path / "dask" / "rejects.csv"
    )
    assert {r.clip_id for r in rejects} == {"emptied", "cut"}
    with h5py.File(tmp_path / "dask" / "video.h5") as handle:
        augmented = handle["meta/augmented"][()]
        assert augmented.any() and (~augmented).any()  # rotated copies were made too


# ------------------------------------------------------------------ the map itself


def square(x: int) -> int:
    return x * x


def squares(batch: list[int]) -> list[int]:
    return [x * x for x in batch]


def die_once(x: int, marker: str) -> tuple[int, str | None]:
    """The first call for item 5 kills its worker process outright, as an out-of-memory
    kill or a segfault in a decoder would. Returns the square and the worker's malloc
    setting."""
    if x == 5 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return x * x, os.environ.get("MALLOC_TRIM_THRESHOLD_")


def started(x: int, folder: str) -> int:
    (Path(folder) / str(x)).touch()
    return x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is not a clip this code expected")
    return x


def test_results_come_back_in_order_from_a_scheduler(cluster):
    workers = Workers(2, "dask", cluster.scheduler_address)
    assert list(map_clips(square, range(20), workers, quiet=True)) == [x * x for x in range(20)]
    batches = map_clip_batches(squares, range(13), 4, workers)
    assert list(batches) == [x * x for x in range(13)]
    assert list(map_clips(square, [], workers)) == []


def test_a_worker_killed_mid_map_is_replaced_and_the_map_finishes(tmp_path, monkeypatch):
    """Also: the LocalCluster's workers, the restarted one too, keep glibc's malloc
    defaults (dask_map.LOCAL_CLUSTER_CONFIG), and this process's environment, which the
    nannies write to, is left as it was."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    environ = dict(os.environ)
    marker = tmp_path / "killed"
    work = functools.partial(die_once, marker=str(marker))
    results = list(map_clips(work, range(16), Workers(2, "dask"), quiet=True))
    assert marker.exists()  # a worker did die
    assert results == [(x * x, None) for x in range(16)]
    assert dict(os.environ) == environ


def test_workers_do_not_run_ahead_of_a_slow_consumer(cluster, tmp_path):
    import time

    work = functools.partial(started, folder=str(tmp_path))
    workers = Workers(2, "dask", cluster.scheduler_address)
    taken = 0
    for _ in map_clips(work, range(30), workers, quiet=True):
        taken += 1
        time.sleep(0.02)
        assert len(list(tmp_path.iterdir())) <= taken + IN_FLIGHT_PER_JOB * 2
    assert taken == 30


def test_an_unexpected_error_on_a_worker_stops_the_map_as_on_the_pool(cluster):
    for workers in (2, Workers(2, "dask", cluster.scheduler_address)):
        with pytest.raises(ValueError, match="item 3 is not a clip"):
            list(map_clips(fails_on_three, range(8), workers, quiet=True))


def test_workers_from_params_and_a_plain_count():
    base = run_params(Path("."), backend="dask", dask_scheduler="tcp://127.0.0.1:8786").base
    assert Workers.from_params(base) == Workers(2, "dask", "tcp://127.0.0.1:8786")
    assert Workers.from_params(base, n_jobs=3).n_jobs == 3
    assert Workers.of(4) == Workers(4, "processes", None)
    with pytest.raises(ValueError, match="needs backend='dask'"):
        Workers(2, "processes", "tcp://127.0.0.1:8786")


def test_the_schema_refuses_a_scheduler_without_the_dask_backend():
    from avemotion.errors import BadInputError

    with pytest.raises(BadInputError, match="only used with backend: dask"):
        run_params(Path("."), dask_scheduler="tcp://127.0.0.1:8786")


def test_an_unreachable_scheduler_is_one_clear_error(monkeypatch):
    from avemotion import dask_map
    from avemotion.errors import BadInputError

    monkeypatch.setattr(dask_map, "CONNECT_TIMEOUT_S", 2)
    free_port = _free_port()
    workers = Workers(2, "dask", f"tcp://127.0.0.1:{free_port}")
    with pytest.raises(BadInputError, match="no Dask scheduler answered at tcp://127.0.0.1"):
        list(map_clips(square, range(4), workers, quiet=True))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
