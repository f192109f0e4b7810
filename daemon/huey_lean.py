"""huey without the optional clients its storage module imports at its top.

`huey.storage` imports redis and psycopg when they are installed (for its Redis and
PostgreSQL storages): ~0.4 s and ~20 MB of resident memory in every process that uses the
queue, which the embedded default (SQLite queue) never needs and a PostgreSQL store loads
through SQLAlchemy only when it connects. Importing this module first (daemon.tasks does)
imports huey with both hidden; `use_redis()` hands huey the redis client when the queue is
configured on Redis ([queue] backend = "redis"). huey's own PostgreSQL storage is not one
of our backends and stays without psycopg.
"""
from __future__ import annotations

import sys

_HIDDEN = ("redis", "psycopg")


def _import_huey() -> None:
    if "huey.storage" in sys.modules:            # imported before us: nothing to save
        return
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None                 # type: ignore[assignment]  # import raises ImportError
    try:
        import huey.storage  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def use_redis() -> None:
    """Give huey's Redis storage the redis client (imported now) if it was imported without."""
    import huey.storage as storage
    if storage.Redis is not None:
        return
    import redis
    from redis import exceptions
    storage.ConnectionPool, storage.Redis = redis.ConnectionPool, redis.Redis
    storage.ConnectionError, storage.TimeoutError = exceptions.ConnectionError, exceptions.TimeoutError
    storage.RedisStorage.redis_client = redis.Redis


_import_huey()
