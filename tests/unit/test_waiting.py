"""controller.waiting.Signal: a timeout that holds on os-ken's native hub too."""

from __future__ import annotations

import threading
import time

from controller.waiting import Signal


def test_waiting_on_an_unset_signal_returns_false_after_the_timeout() -> None:
    started = time.monotonic()
    assert Signal().wait(0.05) is False
    assert 0.04 <= time.monotonic() - started < 1


def test_a_signal_set_from_another_thread_wakes_the_waiter() -> None:
    signal = Signal()
    threading.Timer(0.02, signal.set).start()
    assert signal.wait(5) is True


def test_clear_makes_it_wait_again() -> None:
    signal = Signal()
    signal.set()
    assert signal.wait(0) is True
    signal.clear()
    assert signal.wait(0.01) is False
