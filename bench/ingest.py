"""Benchmark: messages/s through `helpdesk ingest` (mbox) and SMTP intake, and threading accuracy.

Run by hand (prints figures; no assertions):
    .venv/bin/python bench/ingest.py                       # 5,000 messages, fresh state
    .venv/bin/python bench/ingest.py --existing 100000     # per-message cost with 100k tickets present
    .venv/bin/python bench/ingest.py --messages 2000 --no-smtp --existing \
        --pg postgresql+psycopg://postgres@127.0.0.1:5432/test   # also on fresh PostgreSQL databases

Every ingest rate is also given as a ratio to the stdlib `email` parse rate of the same
corpus (email.message_from_bytes, policy.default; best of 3), measured in the same run just
before each ingest, so figures from a busy machine compare with those from a quiet one; the
CPU seconds of the ingest processes (main + helpers) are printed too.

The generated corpus is ~60 % new conversations and ~40 % replies (In-Reply-To/References,
`Re:`/`AW:` prefixes, quoted history), with some HTML-only mail, attachments and RFC 2047
encoded subjects. Threading accuracy = replies stored in the same ticket as their root.
"""
from __future__ import annotations

import argparse
import os
import random
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.app import open_store  # noqa: E402
from daemon.config import load_config  # noqa: E402

WORDS = ("printer jams laptop vpn password reset licence access share drive outlook calendar teams "
         "monitor keyboard wifi badge server slow error crash install update request urgent").split()
SUBJECTS = ["Printer on floor {n} jams", "VPN disconnects every {n} minutes", "Need access to share {n}",
            "Laptop request for new starter #{n}", "Outlook crashes when opening calendar {n}",
            "Überweisung Fehler – Konto {n}", "Licence renewal for tool {n}", "Wi-Fi in room {n} is down"]
PREFIXES = ["Re: ", "RE: ", "AW: ", "Re: Re: ", "SV: "]


def body(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".\n\nThanks,\nUser\n"


def make_corpus(n: int, seed: int = 7, domain: str = "corp.example") -> list[tuple[bytes, str, str]]:
    """(raw, message_id, root_message_id) for n messages, replies after their parents."""
    return list(iter_corpus(n, seed, domain))


def iter_corpus(n: int, seed: int = 7, domain: str = "corp.example"):
    """make_corpus one message at a time (the same messages): for corpora too big to hold."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    roots: list[tuple[str, str, str, list[str]]] = []           # (mid, subject, sender, chain)
    for i in range(n):
        m = EmailMessage()
        mid = f"bench-{seed}-{i}@{domain}"
        when = start + timedelta(seconds=30 * i)
        if roots and rng.random() < 0.40:
            root_mid, subject, sender, chain = rng.choice(roots)
            m["Subject"] = rng.choice(PREFIXES) + subject
            m["In-Reply-To"] = f"<{chain[-1]}>"
            m["References"] = " ".join(f"<{c}>" for c in chain[-10:])
            text = body(rng, 15) + "\nOn Mon, 2 Mar 2026, someone wrote:\n> " + body(rng, 20).replace("\n", "\n> ")
            chain.append(mid)
        else:
            sender = f"user{rng.randrange(2000)}@{rng.choice(['example.org', 'example.net', 'acme.test'])}"
            subject = rng.choice(SUBJECTS).format(n=i)
            root_mid = mid
            roots.append((mid, subject, sender, [mid]))
            m["Subject"] = subject
            text = body(rng)
        m["From"] = sender
        m["To"] = "support@example.com"
        m["Date"] = format_datetime(when)
        m["Message-ID"] = f"<{mid}>"
        if rng.random() < 0.10:
            m.set_content(f"<html><body><p>{text.replace(chr(10), '<br>')}</p></body></html>", subtype="html")
        else:
            m.set_content(text)
        if rng.random() < 0.08:
            m.add_attachment(os.urandom(rng.randrange(2_000, 60_000)), maintype="application", subtype="pdf",
                             filename=f"screenshot-{i}.pdf")
        yield m.as_bytes(), mid, root_mid


def write_mbox(path: Path, corpus) -> None:
    with open(path, "wb") as fh:
        for raw, _, _ in corpus:
            fh.write(b"From bench@example.org Mon Mar  2 08:00:00 2026\n")
            fh.write(raw.replace(b"\nFrom ", b"\n>From ").replace(b"\r\n", b"\n"))
            if not raw.endswith(b"\n"):
                fh.write(b"\n")
            fh.write(b"\n")


KEY_ENV = "HELPDESK_BENCH_SIGNING_KEY"     # a shared database wants a configured signing key


def stdlib_rate(corpus, rounds: int = 3) -> float:
    """Messages/s the stdlib `email` package parses the corpus at (best of `rounds`)."""
    import email
    import email.policy
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for raw, _, _ in corpus:
            email.message_from_bytes(raw, policy=email.policy.default)
        best = min(best, time.perf_counter() - t0)
    return len(corpus) / best


def fresh_pg(admin_url: str) -> str:
    """A new empty PostgreSQL database next to `admin_url`'s; its URL."""
    import uuid
    from sqlalchemy import create_engine, text
    name = f"hd_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


def site_config(state: Path, port: int, processes: int = 2, db_url: str = "") -> Path:
    cfg = state / "bench.toml"
    key = f'key_env = "{KEY_ENV}"\n' if db_url else ""
    cfg.write_text(f'[helpdesk]\nstate_dir = "state"\n{key}[database]\nurl = "{db_url}"\n'
                   f'[smtp]\nport = {port}\ndomains = ["example.com"]\nmax_messages_per_ip_minute = 0\n'
                   f'[worker]\nidle_poll_seconds = 0.2\ningest_processes = {processes}\n')
    return cfg


def helpdesk(cfg: Path, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.setdefault(KEY_ENV, "1 " + "YmVuY2gtc2lnbmluZy1rZXktb2YtdGhlLWluZ2VzdC1iZW5jaA==")
    return subprocess.run([sys.executable, "-m", "daemon", "--config", str(cfg), *args], env=env,
                          capture_output=True, **kw)


def accuracy(cfg: Path, corpus) -> tuple[float, int]:
    """Share of replies stored in their root's ticket, and the number of replies."""
    store = open_store(load_config(str(cfg)))
    from sqlmodel import Session, select
    from store import tables
    with Session(store.engine) as s:
        where = dict(s.exec(select(tables.Message.message_id, tables.Message.ticket_id)).all())
    store.engine.dispose()
    replies = [(mid, root) for _, mid, root in corpus if mid != root]
    right = sum(1 for mid, root in replies if where.get(mid) is not None and where.get(mid) == where.get(root))
    return (right / len(replies) if replies else 1.0), len(replies)


def bench_ingest(work: Path, corpus, label: str, cfg: Path | None = None, *, no_mail: bool = False,
                 ratio: bool = True) -> float:
    cfg = cfg or site_config(work, 0)
    mbox = work / f"{label.replace(' ', '_')}.mbox"
    write_mbox(mbox, corpus)
    stdlib = stdlib_rate(corpus) if ratio else None     # under the machine load of the run that follows
    cpu0 = os.times()
    t0 = time.perf_counter()
    proc = helpdesk(cfg, "ingest", "--quiet", *(["--no-mail"] if no_mail else []), str(mbox))
    dt = time.perf_counter() - t0
    cpu1 = os.times()
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed: {proc.stderr.decode()[-2000:]}")
    rate = len(corpus) / dt
    acc, nrep = accuracy(cfg, corpus)
    vs = f"  {rate / stdlib:5.2f} x stdlib {stdlib:5.0f}" if stdlib else ""
    print(f"ingest  {label:<44} {len(corpus):>7} msgs  {dt:7.2f} s  {rate:7.0f} msg/s{vs}  cpu {cpu:6.2f} s  "
          f"threading {acc * 100:6.2f} % of {nrep} replies", flush=True)
    return rate


def bench_smtp(work: Path, corpus, conns: int = 4) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = site_config(work, port)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(cfg), "serve"], env=env,
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in daemon.stderr:
        if b" ready" in line:
            break
    threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
    chunks = [corpus[i::conns] for i in range(conns)]
    latencies: list[float] = []

    def send(chunk):
        with smtplib.SMTP("127.0.0.1", port) as c:
            for raw, _, _ in chunk:
                t = time.perf_counter()
                c.sendmail("bench@example.org", ["support@example.com"], raw.replace(b"\n", b"\r\n"))
                latencies.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(ch,)) for ch in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.perf_counter() - t0
    store = open_store(load_config(str(cfg)))
    while store.counts()["messages"] < len(corpus):
        time.sleep(0.05)
    stored = time.perf_counter() - t0
    store.engine.dispose()
    daemon.terminate()
    daemon.wait()
    lat = sorted(latencies)
    acc, nrep = accuracy(cfg, corpus)
    print(f"smtp    {conns} connections         {len(corpus):>7} msgs  250s at {len(corpus) / accepted:7.0f} msg/s "
          f"(median {statistics.median(lat) * 1000:.1f} ms, p95 {lat[int(len(lat) * .95)] * 1000:.1f} ms per DATA); "
          f"stored end to end {len(corpus) / stored:7.0f} msg/s; threading {acc * 100:.2f} % of {nrep}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--existing", type=int, nargs="*", default=[1000],
                    help="also measure ingest with this many tickets already present")
    ap.add_argument("--no-smtp", action="store_true")
    ap.add_argument("--pg", metavar="ADMIN_URL", default="",
                    help="also ingest into fresh PostgreSQL databases created (and dropped) through this URL")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cpu(s), python {sys.version.split()[0]}, SQLite embedded default")
    corpus = make_corpus(args.messages)
    print(f"stdlib  email.message_from_bytes (policy.default)      {len(corpus):>7} msgs  "
          f"{stdlib_rate(corpus):7.0f} msg/s", flush=True)
    runs = [(no_mail, processes, "") for no_mail, processes in ((True, 2), (True, 1), (False, 2))]
    if args.pg:
        runs += [(True, 2, "pg"), (False, 2, "pg")]
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        for no_mail, processes, db in runs:
            fresh = Path(tmp) / f"fresh-{no_mail}-{processes}-{db}"
            fresh.mkdir()
            label = ("fresh, --no-mail" if no_mail else "fresh, acks+agent mail planned") + \
                (", one process" if processes == 1 else "") + (", PostgreSQL" if db else "")
            url = fresh_pg(args.pg) if db else ""
            try:
                bench_ingest(fresh, corpus, label, site_config(fresh, 0, processes, url), no_mail=no_mail)
            finally:
                if url:
                    drop_pg(args.pg, url)
        print(f"stdlib  (again, after the ingest runs)                 {len(corpus):>7} msgs  "
              f"{stdlib_rate(corpus):7.0f} msg/s", flush=True)
        if not args.no_smtp:
            smtp_dir = Path(tmp) / "smtp"
            smtp_dir.mkdir()
            bench_smtp(smtp_dir, corpus)
        for existing in args.existing:
            work = Path(tmp) / f"existing-{existing}"
            work.mkdir()
            cfg = site_config(work, 0)
            pre = make_corpus(existing, seed=99, domain="pre.example")
            pre = [(raw, mid, root) for raw, mid, root in pre]
            bench_ingest(work, pre, f"(preload {existing} messages)", cfg, no_mail=True, ratio=False)
            store = open_store(load_config(str(cfg)))
            tickets = store.counts()["tickets"]
            store.engine.dispose()
            bench_ingest(work, corpus[:2000], f"2000 on {tickets} tickets, --no-mail", cfg, no_mail=True)


if __name__ == "__main__":
    main()
