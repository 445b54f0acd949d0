"""map_clips and map_clip_batches: ordered results, and no deadlock when the parent already
used OpenCV threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from avemotion.parallel import map_clip_batches, map_clips


def square(x: int) -> int:
    return x * x


def test_results_come_back_in_order_on_two_processes():
    assert list(map_clips(square, range(12), n_jobs=2)) == [x * x for x in range(12)]
    assert list(map_clips(square, [3], n_jobs=2)) == [9]


def squares(batch: list[int]) -> list[int]:
    return [x * x for x in batch]


def one_short(batch: list[int]) -> list[int]:
    return squares(batch)[:-1]


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 4, 5, 50])
def test_batches_give_one_result_per_item_in_order(n_jobs, batch_size):
    results = map_clip_batches(squares, range(13), batch_size, n_jobs=n_jobs)
    assert list(results) == [x * x for x in range(13)]


def test_a_batch_result_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="2 results for a batch of 3"):
        list(map_clip_batches(one_short, range(6), 3))


def test_workers_do_not_hang_after_the_parent_ran_multithreaded_opencv():
    script = textwrap.dedent(
        """
        import cv2, numpy as np
        from avemotion.parallel import map_clips
        cv2.setNumThreads(3)  # a multithreaded OpenCV in the parent, whatever the machine
        image = np.random.default_rng(0).integers(0, 255, (720, 1280), np.uint8)
        for _ in range(100):
            cv2.resize(image, (640, 360))
        def blur(n):
            return float(cv2.GaussianBlur(image, (5, 5), 0).mean()) + n
        def threads(n):
            return cv2.getNumThreads()
        print(len(list(map_clips(blur, range(4), n_jobs=2))))
        print(set(map_clips(threads, range(4), n_jobs=2)) == {1})  # one per worker
        print(cv2.getNumThreads())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # finished, each worker used one OpenCV thread, and the parent's count was restored
    assert done.stdout.split() == ["4", "True", "3"]


STARTED = None  # a multiprocessing.Value the forked workers inherit


def count_start(x: int) -> int:
    with STARTED.get_lock():
        STARTED.value += 1
    return x


def test_workers_do_not_run_ahead_of_a_slow_consumer():
    """Results wait in memory until taken: at most a small window of tasks may be started
    beyond what the consumer has taken, however slow it is (a stage writing HDF5)."""
    import multiprocessing
    import time

    from avemotion.parallel import IN_FLIGHT_PER_JOB

    global STARTED
    STARTED = multiprocessing.get_context("fork").Value("i", 0)
    taken = 0
    for _ in map_clips(count_start, range(40), n_jobs=2, quiet=True):
        taken += 1
        time.sleep(0.02)
        assert STARTED.value <= taken + IN_FLIGHT_PER_JOB * 2
    assert taken == 40 and STARTED.value == 40
