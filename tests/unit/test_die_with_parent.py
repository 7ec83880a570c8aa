"""`storage.daemon.die_with_parent`: the child gets SIGTERM when the thread that started it exits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from storage.daemon import die_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")


def _start_sleeper(out: list[subprocess.Popen]) -> None:
    out.append(subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent(), start_new_session=True))


def test_the_child_dies_when_the_thread_that_started_it_exits() -> None:
    # Also the pitfall it documents: a thread, not the process, is the "parent" that matters.
    started: list[subprocess.Popen] = []
    thread = threading.Thread(target=_start_sleeper, args=(started,))
    thread.start()
    thread.join()
    try:
        assert started[0].wait(5) == -15  # SIGTERM
    finally:
        if started and started[0].poll() is None:
            started[0].kill()
            started[0].wait()


def test_the_child_lives_while_the_thread_that_started_it_does() -> None:
    started: list[subprocess.Popen] = []
    _start_sleeper(started)  # this (the main) thread lives on
    try:
        time.sleep(0.5)
        assert started[0].poll() is None
    finally:
        started[0].kill()
        started[0].wait()
