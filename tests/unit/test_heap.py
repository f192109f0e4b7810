"""daemon.heap: the periodic malloc trim and the arena limit (issue 16).
Memory figures come from bench/serve_memory.py, not from here."""
from __future__ import annotations

from daemon import heap


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_trim_runs_once_per_period():
    clock, released = Clock(), []
    trim = heap.Trim(60.0, release=lambda: released.append(clock.now) or True, clock=clock)
    assert not trim.tick()                         # just started
    clock.now += 59.9
    assert not trim.tick()
    clock.now += 0.1
    assert trim.tick() and released == [1060.0]
    clock.now += 30
    assert not trim.tick()
    clock.now += 30
    assert trim.tick() and released == [1060.0, 1120.0] and trim.count == 2


def test_trim_zero_period_never_trims():
    clock, released = Clock(), []
    trim = heap.Trim(0, release=lambda: released.append(1) or True, clock=clock)
    clock.now += 10_000
    assert not trim.tick() and released == []


def test_the_default_release_is_malloc_trim_and_answers():
    assert isinstance(heap.trim(), bool)           # glibc: malloc_trim(0); elsewhere False
    trim = heap.Trim(1.0, clock=(clock := Clock()))
    clock.now += 1
    assert trim.tick() and trim.count == 1


def test_an_explicit_arena_setting_wins():
    assert heap.limit_arenas(2, environ={"MALLOC_ARENA_MAX": "8"}) is False
    assert heap.limit_arenas(2, environ={"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) is False


def test_limit_arenas_sets_it_on_glibc():
    glibc = heap._glibc() is not None
    assert heap.limit_arenas(2, environ={}) is glibc
