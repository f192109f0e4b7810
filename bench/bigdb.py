"""Benchmark: does the desk stay flat as the database grows? (issue 16). Run by hand; prints figures.

    .venv/bin/python bench/bigdb.py                         # 1,000 vs 1,000,000 tickets (~10 min, ~6 GB)
    .venv/bin/python bench/bigdb.py --tickets 100000        # quicker
    .venv/bin/python bench/bigdb.py --work /var/tmp/bigdb --no-export   # keep the desks, rerun on them

1. A seed desk: bench/ingest.py's corpus ingested (`--no-mail`) until it holds --seed tickets.
2. A big desk: a copy of the seed grown to --tickets by copying every ticket-scoped row
   (tickets, messages, thread keys, events, outbox rows, SLA state, the full-text index...)
   with shifted ids and suffixed unique keys: the same shape of data, a thousand times over.
3. Per-message ingest cost (the default, acknowledgements planned) of the same new mail on
   both, two rounds each; the ratio big/seed is the figure (target: within 1.15).
4. Query plans: every distinct statement the big desk ran while ingesting is EXPLAINed
   (SQLite); a full scan of a table that grows with tickets is listed. The statements whose
   time grew most from the seed desk to the big one are listed with their ms per message.
5. `helpdesk export` and `helpdesk tickets --json` of the big desk: wall time and peak RSS
   (target for export: under 200 MB).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import make_corpus, site_config, write_mbox  # noqa: E402  (bench/ingest.py)

from tests.integration.intake_memory import status_kb  # noqa: E402

from store import tables  # noqa: E402

# tables whose rows belong to no ticket (or one per address / node): not copied
NOT_GROWN = {"schemainfo", "mailsuppression", "mailfuse", "nodebeat", "slacursor", "agentdigest", "quarantine",
             "alembic_version"}
GROWS = {"ticket", "message", "threadkey", "event", "participant", "outbox", "outboxrecipient", "ticketmail",
         "tickettag", "ticketsla", "slafired", "rawmessage", "attachment", "agentmessage", "message_fts"}


def db_path(work: Path) -> Path:
    return work / "state" / "helpdesk.db"


def copy_plan(c: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    """(table, column list, select expressions with :k placeholders, id column) per table, in
    foreign-key order: integer ids shifted by k x the table's seed maximum, foreign keys by
    their target's, and the text columns of a unique key that holds no shifted column
    suffixed with #k."""
    plan, top = [], {}
    for table in tables.SQLModel.metadata.sorted_tables:
        if table.name in NOT_GROWN:
            continue
        pk = [col.name for col in table.primary_key.columns]
        idcol = pk[0] if len(pk) == 1 and table.c[pk[0]].type.python_type is int else None
        if idcol:
            top[table.name] = c.execute(f"SELECT coalesce(max({idcol}), 0) FROM {table.name}").fetchone()[0]
        shifted = {}
        for col in table.columns:
            fks = list(col.foreign_keys)
            if col.name == idcol:
                shifted[col.name] = table.name
            elif fks and fks[0].column.table.name in top:
                shifted[col.name] = fks[0].column.table.name
        suffixed = set()
        uniques = [list(u.columns) for u in table.constraints if getattr(u, "columns", None) is not None
                   and u.__class__.__name__ == "UniqueConstraint"]
        uniques += [list(i.columns) for i in table.indexes if i.unique]
        uniques += [[col] for col in table.columns if col.unique]
        if idcol is None:
            uniques.append(list(table.primary_key.columns))
        for cols in uniques:
            if not any(col.name in shifted for col in cols):
                suffixed.update(col.name for col in cols if col.type.python_type in (str, object))
        exprs = []
        for col in table.columns:
            if col.name in shifted:
                exprs.append(f"{col.name} + :k * {top[shifted[col.name]]}")
            elif col.name in suffixed:
                exprs.append(f"{col.name} || '#' || :k")
            else:
                exprs.append(col.name)
        if shifted:                                   # the seed's rows only, not earlier copies
            col = next(iter(shifted))
            where = f"{col} <= {top[shifted[col]]}"
        else:
            where = " AND ".join(f"instr({col}, '#') = 0" for col in sorted(suffixed)) or None
        plan.append((table.name, ", ".join(col.name for col in table.columns), ", ".join(exprs), where))
    fts = c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'message_fts'").fetchone()[0]
    if fts:
        plan.append(("message_fts", "rowid, subject, body, ticket_id, at",
                     f"rowid + :k * {top['message']}, subject, body, ticket_id + :k * {top['ticket']}, at",
                     f"rowid <= {top['message']}"))
    return plan


def grow(db: Path, copies: int) -> None:
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = OFF")
    c.execute("PRAGMA cache_size = -3000000")       # 3 GB: the indexes' random inserts stay in memory
    c.execute("PRAGMA temp_store = MEMORY")
    plan = copy_plan(c)
    t0 = time.perf_counter()
    for k in range(1, copies):
        with c:
            for table, cols, exprs, where in plan:
                c.execute(f"INSERT INTO {table} ({cols}) SELECT {exprs} FROM {table}"
                          + (f" WHERE {where}" if where else ""), {"k": k})
        if k % max(1, copies // 10) == 0:
            print(f"  grown x{k + 1}: {time.perf_counter() - t0:.0f} s", flush=True)
    c.execute("ANALYZE")
    c.close()


def tickets_in(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM ticket").fetchone()[0]


def timed(cfg: Path, *args: str, out=subprocess.DEVNULL) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, sampled every 20 ms) of one `helpdesk` run."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    peak = 0.0
    with tempfile.TemporaryFile() as log:          # a pipe would fill and stall the child
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), *args], env=env,
                                stdout=out, stderr=log)
        while proc.poll() is None:
            peak = max(peak, status_kb(proc.pid, "VmHWM") / 1024)   # since exec: not ru_maxrss
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        log.seek(0)
        err = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"helpdesk {' '.join(args)} failed ({proc.returncode}): {err[-2000:]}")
    return dt, peak


def ingest_cost(work: Path, corpus, label: str) -> float:
    """ms per message of `helpdesk ingest` (acknowledgements planned) of `corpus`."""
    mbox = work / f"{label}.mbox"
    write_mbox(mbox, corpus)
    dt, _ = timed(work / "bench.toml", "ingest", "--quiet", str(mbox))
    return dt * 1000 / len(corpus)


def ingest_in_process(work: Path, corpus, name: str, listen) -> None:
    """Ingest `corpus` (acknowledgements planned) in this process on the desk in `work`,
    `listen(engine)` having attached its statement listeners first."""
    from daemon.app import build_app
    from daemon.config import load_config
    from daemon.intake.ingest import ingest
    here = os.getcwd()
    os.chdir(work)
    app = build_app(load_config(str(work / "bench.toml")))
    listen(app.store.engine)
    mbox = work / f"{name}.mbox"
    write_mbox(mbox, corpus)
    try:
        ingest(app, [str(mbox)])
    finally:
        app.close()
        os.chdir(here)


def plans(work: Path, corpus) -> list[str]:
    """Full scans of growing tables in the statements an in-process ingest of `corpus` runs."""
    from sqlalchemy import event
    seen: dict[str, tuple] = {}

    def listen(engine):
        @event.listens_for(engine, "before_cursor_execute")
        def grab(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")) and not executemany:
                seen.setdefault(statement, parameters)
    ingest_in_process(work, corpus, "plans", listen)
    bad = []
    c = sqlite3.connect(db_path(work))
    for statement, params in seen.items():
        try:
            rows = c.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        except sqlite3.Error:
            continue
        for row in rows:
            detail = row[-1]
            words = detail.split()
            if words[:1] == ["SCAN"] and "INDEX" not in detail and words[1] in GROWS:
                bad.append(f"{detail}  <-  {' '.join(statement.split())[:160]}")
    c.close()
    return sorted(set(bad))


def statement_times(work: Path, corpus) -> dict[str, float]:
    """Seconds per distinct statement (whitespace folded) of an in-process ingest of `corpus`
    (acknowledgements planned): where the time of a bigger desk goes."""
    from sqlalchemy import event
    spent: dict[str, float] = {}

    def listen(engine):
        @event.listens_for(engine, "before_cursor_execute")
        def start(conn, cursor, statement, parameters, context, executemany):
            conn.info["bench_t0"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def stop(conn, cursor, statement, parameters, context, executemany):
            key = ("many " if executemany else "") + " ".join(statement.split())[:150]
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
    ingest_in_process(work, corpus, "times", listen)
    return spent


def grown_statements(seed: Path, big: Path, messages: int, stamp: int) -> list[str]:
    """The statements whose time grew most from the seed desk to the big one (same mail)."""
    corpus = make_corpus(messages, seed=4000, domain=f"times-{stamp}.example")
    a, b = statement_times(seed, corpus), statement_times(big, corpus)
    rows = sorted(((b.get(k, 0.0) - a.get(k, 0.0), k) for k in set(a) | set(b)), reverse=True)
    return [f"{(b.get(k, 0.0)) * 1000 / messages:7.3f} ms/msg big vs {a.get(k, 0.0) * 1000 / messages:7.3f} seed  {k}"
            for _, k in rows[:12]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1000, help="tickets in the seed desk")
    ap.add_argument("--messages", type=int, default=1000, help="new mail ingested per round")
    ap.add_argument("--work", type=Path, help="keep the desks in this directory and reuse them when they exist "
                    "(each run adds its new mail to them)")
    ap.add_argument("--no-export", action="store_true", help="stop after the ingest figures")
    args = ap.parse_args()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hd-bigdb-") as tmp:
        run(Path(args.work or tmp), args)


def build(root: Path, args) -> tuple[Path, Path]:
    """The seed and big desks under `root` (kept ones as they are)."""
    seed, big = root / "seed", root / "big"
    if db_path(big).exists() and db_path(seed).exists():
        print(f"reusing desks in {root}: seed {tickets_in(db_path(seed))}, big {tickets_in(db_path(big))} tickets")
        return seed, big
    shutil.rmtree(seed, ignore_errors=True)
    shutil.rmtree(big, ignore_errors=True)
    seed.mkdir()
    site_config(seed, 0)
    pre, n = [], int(args.seed * 1.7)
    while True:                                   # ~60 % of the corpus opens a ticket
        pre = make_corpus(n, seed=99, domain="pre.example")
        write_mbox(seed / "pre.mbox", pre)
        shutil.rmtree(seed / "state", ignore_errors=True)
        timed(seed / "bench.toml", "ingest", "--quiet", "--no-mail", str(seed / "pre.mbox"))
        have = tickets_in(db_path(seed))
        if have >= args.seed:
            break
        n = int(n * args.seed / max(have, 1)) + 10
    shutil.copytree(seed, big)
    copies = max(1, round(args.tickets / have))
    print(f"seed desk: {have} tickets; growing a copy x{copies} ...", flush=True)
    t0 = time.perf_counter()
    grow(db_path(big), copies)
    size = db_path(big).stat().st_size / 2**30
    print(f"big desk: {tickets_in(db_path(big))} tickets, {size:.2f} GB, grown in {time.perf_counter() - t0:.0f} s")
    return seed, big


def run(root: Path, args) -> None:
    seed, big = build(root, args)
    costs: dict[str, list[float]] = {"seed": [], "big": []}
    stamp = time.time_ns()                       # new mail on each run (kept desks hold the last run's)
    for rnd in (1, 2):
        corpus = make_corpus(args.messages, seed=1000 + rnd, domain=f"round{rnd}-{stamp}.example")
        for name, work in (("seed", seed), ("big", big)):
            costs[name].append(ingest_cost(work, corpus, f"round{rnd}"))
            print(f"  round {rnd}: {name:<4} {costs[name][-1]:6.2f} ms/msg", flush=True)
    s, b = min(costs["seed"]), min(costs["big"])
    print(f"ingest, acks planned, best of 2 rounds of {args.messages}: seed {s:.2f} ms/msg, big {b:.2f} ms/msg, "
          f"ratio {b / s:.3f} (target <= 1.15)")
    print("statements whose time grew most (in-process ingest of the same new mail):")
    for line in grown_statements(seed, big, args.messages, stamp):
        print("  " + line)
    if args.no_export:
        return
    scans = plans(big, make_corpus(200, seed=3000, domain=f"plans-{stamp}.example"))
    print(f"full scans of growing tables while ingesting on the big desk: {len(scans)}")
    for line in scans:
        print("  " + line)
    dt, rss = timed(big / "bench.toml", "export")
    print(f"export of {tickets_in(db_path(big))} tickets: {dt:.1f} s, peak RSS {rss:.0f} MB (target < 200 MB)")
    dt, rss = timed(big / "bench.toml", "tickets", "--json")
    print(f"tickets --json: {dt:.1f} s, peak RSS {rss:.0f} MB")
    dt, rss = timed(big / "bench.toml", "tickets", "--limit", "20")
    print(f"tickets --limit 20: {dt * 1000:.0f} ms, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
