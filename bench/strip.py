"""Benchmark of the reply-stripping stage (daemon.pipeline.strip), run by hand.

    /work/venv/bin/python bench/strip.py [CORPUS_DIR] [--repeat N]

Prints the cost of one strip_reply() call per message (median, p95, max) over every
message of ../shared/corpus/replies (.body.txt; .body.html through strip_reply_html; the
first text/plain part of each .eml, else its text/html part), then the same for the 767 KB
email_long_quote.body.txt ReDoS case alone.  Each message is timed --repeat times and the
fastest run counts (the least disturbed by the machine); extracting the text part of an
.eml is not timed.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.pipeline.strip import strip_reply, strip_reply_html  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
LONG_QUOTE = Path("email_reply_parser") / "email_long_quote.body.txt"


def _decode(data: bytes, charset: str | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode(charset or "latin-1")
        except (LookupError, UnicodeDecodeError):
            return data.decode("latin-1")


def _eml_body(path: Path) -> tuple[Callable[[str], str], str] | None:
    """(strip function, text) of the first text/plain part, else of the first text/html."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    parts = [p for p in message.walk() if p.get_content_type() in ("text/plain", "text/html")]
    for part in sorted(parts, key=lambda p: p.get_content_type() != "text/plain"):
        text = _decode(part.get_payload(decode=True) or b"", part.get_content_charset())
        return (strip_reply if part.get_content_type() == "text/plain" else strip_reply_html), text
    return None


def load_messages(replies: Path) -> dict[str, tuple[Callable[[str], str], str]]:
    """name -> (function to time, its input) for every message in the replies folder."""
    messages = {}
    for path in sorted(replies.glob("*/*")):
        name = str(path.relative_to(replies))
        if path.name.endswith(".body.txt"):
            messages[name] = (strip_reply, _decode(path.read_bytes()))
        elif path.name.endswith(".body.html"):
            messages[name] = (strip_reply_html, _decode(path.read_bytes()))
        elif path.suffix == ".eml" and (body := _eml_body(path)) is not None:
            messages[name] = body
    return messages


def time_call(function: Callable[[str], str], text: str, repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - start)
    return best


def render_stats(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{label:<34} n={len(ordered):<4} median {statistics.median(ordered) * 1e3:8.3f} ms"
            f"   p95 {p95 * 1e3:8.3f} ms   max {ordered[-1] * 1e3:8.3f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    replies = args.corpus / "replies"
    if not replies.is_dir():
        print(f"no replies corpus at {replies}", file=sys.stderr)
        return 2
    messages = load_messages(replies)
    gc.collect()
    costs = {name: time_call(f, text, args.repeat) for name, (f, text) in messages.items()}
    print(render_stats("whole replies corpus", list(costs.values())))
    rest = [cost for name, cost in costs.items() if Path(name) != LONG_QUOTE]
    print(render_stats("  without the long-quote case", rest))
    if str(LONG_QUOTE) in messages:
        function, text = messages[str(LONG_QUOTE)]
        runs = [time_call(function, text, 1) for _ in range(max(args.repeat, 10))]
        print(render_stats(f"long quote ({len(text) / 1024:.0f} KiB), per run", runs))
    slowest = sorted(costs, key=costs.get, reverse=True)[:3]
    print("slowest:", ", ".join(f"{name} {costs[name] * 1e3:.2f} ms" for name in slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
