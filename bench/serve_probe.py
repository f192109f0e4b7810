"""Inside the serve process of bench/serve_memory.py --probe: what its memory is made of.

serve_memory copies this file as sitecustomize.py into a directory put first on the serve
process's PYTHONPATH, so it runs at interpreter start (in `serve` only, not its parse lanes).
A thread reads the number of stored messages from the database every 3 s; at each mark of
HD_PROBE_MARKS it appends to HD_PROBE_OUT: VmRSS, the threads, glibc's malloc_stats (per
arena: system and in-use bytes), pymalloc's arenas (sys._debugmallocstats; first mark only), SQLite's heap
(sqlite3_status64: page caches, statements) and, from the first mark on (tracemalloc starts
there: from the start it slows serve's imports past the bench's 60 s), the allocation sites and
object types grown since that mark. Then it calls malloc_trim(0) and notes what that returned.
"""
import ctypes
import gc
import os
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections import Counter


def _captured(call) -> str:
    """What a C function prints on stderr (fd 2)."""
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    try:
        call()
    finally:
        os.dup2(saved, 2)
        os.close(w)
        os.close(saved)
    data = os.read(r, 1 << 22).decode(errors="replace")
    os.close(r)
    return data


def _rss() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def _sqlite_mb() -> str:
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")          # the copy _sqlite3 uses
        cur, high = ctypes.c_int64(), ctypes.c_int64()
        lib.sqlite3_status64(0, ctypes.byref(cur), ctypes.byref(high), 0)    # SQLITE_STATUS_MEMORY_USED
        return f"{cur.value / 1e6:.1f} MB (high {high.value / 1e6:.1f})"
    except (OSError, AttributeError):
        return "n/a"


def _pymalloc() -> str:
    keep = ("# arenas allocated current", "# arenas highwater mark", "# bytes in allocated blocks",
            "# bytes in available blocks")
    if tracemalloc.is_tracing():
        return "n/a while tracemalloc traces (it wraps pymalloc)"
    lines = _captured(sys._debugmallocstats).splitlines()
    return "; ".join(" ".join(ln.split()) for ln in lines if ln.startswith(keep))


def _glibc(libc) -> str:
    lines = _captured(libc.malloc_stats).splitlines()
    return "; ".join(" ".join(ln.split()) for ln in lines if ln.strip())


def _stored() -> int:
    with sqlite3.connect("file:state/helpdesk.db?mode=ro", uri=True, timeout=5) as c:
        return c.execute("SELECT max(id) FROM message").fetchone()[0] or 0


def _write(out, n: int, base, types, top: int) -> tuple:
    libc = ctypes.CDLL(None)
    gc.collect()
    pymalloc = _pymalloc()
    if not tracemalloc.is_tracing():
        tracemalloc.start(4)
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    now_types = Counter(type(o).__qualname__ for o in gc.get_objects())
    with open(out, "a") as f:
        names = sorted(t.name for t in threading.enumerate())
        f.write(f"\n===== {n} stored  VmRSS {_rss():.1f} MB  traced since first mark "
                f"{tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB  {len(names)} threads ({', '.join(names)})\n")
        f.write(f"  sqlite heap {_sqlite_mb()}\n  pymalloc: {pymalloc}\n  glibc: {_glibc(libc)}\n")
        before, t0 = _rss(), time.perf_counter()
        libc.malloc_trim(0)
        f.write(f"  malloc_trim(0): VmRSS {before:.1f} -> {_rss():.1f} MB in {(time.perf_counter() - t0) * 1e3:.1f} ms\n")
        if base is None:
            return snap, now_types
        for st in snap.compare_to(base, "traceback")[:top]:
            frames = " <- ".join(f"{'/'.join(fr.filename.split('/')[-2:])}:{fr.lineno}" for fr in st.traceback)
            f.write(f"  {st.size_diff / 1024:+9.0f} KiB {st.count_diff:+8d} blocks  {frames}\n")
        grown = now_types - types
        f.write("  objects grown: " + ", ".join(f"{k} +{v}" for k, v in grown.most_common(top)) + "\n")
    return base, types


def _probe(out: str, marks: list[int], top: int) -> None:
    base = types = None
    while marks:
        time.sleep(3)
        try:
            n = _stored()
        except sqlite3.Error:
            continue
        if n >= marks[0]:
            while marks and n >= marks[0]:
                marks.pop(0)
            base, types = _write(out, n, base, types, top)


if "serve" in sys.argv and os.environ.get("HD_PROBE_OUT"):
    threading.Thread(target=_probe, name="memory-probe", daemon=True,
                     args=(os.environ["HD_PROBE_OUT"], [int(m) for m in os.environ["HD_PROBE_MARKS"].split(",")],
                           int(os.environ.get("HD_PROBE_TOP", "20")))).start()
