"""huey without redis and psycopg (daemon.huey_lean): a process on the embedded default never
loads them; one whose queue is on Redis gets a working Redis storage."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REDIS_URL, REPO, missing


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_embedded_default_never_imports_redis_or_psycopg(tmp_path):
    got = _run(f"""
import json, sys
from daemon.config import load_config
from daemon.tasks import configure_queue
from tests.conftest import write_site_config
from pathlib import Path
q = configure_queue(load_config(str(write_site_config(Path({str(tmp_path)!r})))))
q.enqueue(__import__('daemon.tasks', fromlist=['sweep']).sweep.s())
print(json.dumps({{"loaded": [m for m in ("redis", "psycopg") if m in sys.modules], "queued": len(q)}}))
""")
    assert got == {"loaded": [], "queued": 1}


def test_a_queue_on_redis_gets_the_client(tmp_path):
    try:
        import redis
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        missing(f"Redis not reachable at {REDIS_URL}: {exc.__class__.__name__}")
    got = _run(f"""
import json, sys
from daemon.config import load_config
from daemon import tasks
from tests.conftest import write_site_config
from pathlib import Path
before = "redis" in sys.modules
cfg = load_config(str(write_site_config(Path({str(tmp_path)!r}), '[queue]\\nbackend = "redis"\\nurl = "{REDIS_URL}"\\n')))
q = tasks.configure_queue(cfg)
q.flush()
q.enqueue(tasks.sweep.s())
print(json.dumps({{"before": before, "queued": len(q), "storage": type(q.storage).__name__}}))
q.flush()
""")
    assert got == {"before": False, "queued": 1, "storage": "RedisStorage"}
