"""map_clips: ordered results, and no deadlock when the parent already used OpenCV threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from avemotion.parallel import map_clips


def square(x: int) -> int:
    return x * x


def test_results_come_back_in_order_on_two_processes():
    assert list(map_clips(square, range(12), n_jobs=2)) == [x * x for x in range(12)]
    assert list(map_clips(square, [3], n_jobs=2)) == [9]


def test_workers_do_not_hang_after_the_parent_ran_multithreaded_opencv():
    script = textwrap.dedent(
        """
        import cv2, numpy as np
        from avemotion.parallel import map_clips
        image = np.random.default_rng(0).integers(0, 255, (720, 1280), np.uint8)
        for _ in range(100):
            cv2.resize(image, (640, 360))
        def blur(n):
            return float(cv2.GaussianBlur(image, (5, 5), 0).mean()) + n
        print(len(list(map_clips(blur, range(4), n_jobs=2))))
        print(cv2.getNumThreads() > 1 or cv2.getNumThreads() == cv2.getNumberOfCPUs())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "True"]  # finished, and the thread count was restored
