"""tests.conftest.free_port: ports outside the ephemeral range, each handed to one holder
on the machine while that process lives (a lock file per port), never one in use."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PORTS, REPO, free_port, port_range_for_tests, release_port

CHILD = """
import sys
from tests.conftest import free_port
ports = range(int(sys.argv[1]), int(sys.argv[2]))
print(free_port(ports=ports), free_port(ports=ports), flush=True)
sys.stdin.read()
"""


def ephemeral() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_distinct_and_outside_the_ephemeral_range():
    got = [free_port() for _ in range(20)]
    assert len(set(got)) == 20
    assert all(p in PORTS and p not in ephemeral() for p in got)
    assert port_range_for_tests() == PORTS


def test_a_port_another_process_holds_is_never_handed_out():
    start = PORTS.start + (PORTS.stop - PORTS.start) // 2
    ports = range(start, start + 4)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ports.start), str(ports.stop)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = set(map(int, child.stdout.readline().split()))
        assert len(theirs) == 2 and theirs <= set(ports)
        ours = []
        with pytest.raises(RuntimeError, match="no free test port"):
            for _ in ports:
                ours.append(free_port(ports=ports))
        assert ours and not theirs & set(ours)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    for port in ours:
        release_port(port)
    assert free_port(ports=ports) in ports           # the child's locks died with it


def test_a_port_something_listens_on_is_skipped():
    port = free_port()
    release_port(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(RuntimeError):
            free_port(ports=range(port, port + 1))
