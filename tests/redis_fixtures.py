"""A real ``redis-server`` for the tests marked ``redis``, and helpers to run test processes.

``redis_server`` starts one on a free port of 127.0.0.1 with persistence off; ``redis_server_aof``
one with the append-only file on (``appendfsync always``), for the restart test. Each is a
:class:`RedisServer` (``url``, ``port``, ``restart()``, ``client()``), stopped after the test.
``procs`` starts the helper script ``redis_procs.py`` in child processes and kills whatever is
left of them after the test. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

REDIS_SERVER = shutil.which("redis-server")
_HELPER = Path(__file__).with_name("redis_procs.py")
_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` child process in a directory of its own."""

    def __init__(self, directory: Path, *, aof: bool = False) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (`make test` installs it)")
        self.directory = directory
        self.aof = aof
        self.port = _free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``."""
        args = [
            str(REDIS_SERVER),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / "redis.log"
                text = log.read_text() if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{text}")
            time.sleep(0.02)  # polls the server's readiness, bounded by the deadline above

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, graceful: bool = True) -> None:
        """Stop it: ``SIGTERM`` (which flushes the append-only file) or ``SIGKILL``."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)

    def restart(self) -> None:
        """Stop it and start it again on the same port, with the same files."""
        self.stop()
        self.start()

    def client(self) -> Any:
        """A ``redis.Redis`` client of this server (close it after use)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=10.0)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` on a free port of 127.0.0.1, persistence off."""
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop(graceful=False)


@pytest.fixture
def redis_server_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` with the append-only file on (``appendfsync always``)."""
    server = RedisServer(tmp_path, aof=True)
    try:
        yield server
    finally:
        server.stop(graceful=False)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    """A ``redis.Redis`` client of ``redis_server``, closed after the test."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


class Procs:
    """Child processes running ``redis_procs.py``; each reports on JSON lines in a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, role: str, name: str, **options: Any) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``redis_procs.py role`` with ``options`` (JSON); returns it and its report."""
        report = self.directory / f"{name}.jsonl"
        errors = open(self.directory / f"{name}.stderr", "wb")  # noqa: SIM115 - closed below
        try:
            process = subprocess.Popen(
                [sys.executable, str(_HELPER), role, str(report), json.dumps(options)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            errors.close()
        self.children.append((process, report))
        return process, report

    def wait_all(self, timeout: float) -> None:
        """Wait for every child to exit (``pytest.fail`` naming the ones that did not)."""
        deadline = time.monotonic() + timeout
        for process, report in self.children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"{report.stem} did not finish within {timeout:g} s:\n" + self.log(report)
                )

    def log(self, report: Path) -> str:
        """What a child reported, and its stderr."""
        stderr = report.with_suffix(".stderr")
        text = report.read_text() if report.exists() else "(no report)"
        return text + "\n--- stderr ---\n" + (stderr.read_text() if stderr.exists() else "")

    def kill_all(self) -> None:
        for process, _ in self.children:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5.0)


def read_report(report: Path) -> list[dict[str, Any]]:
    """The JSON lines a child wrote so far (a partly written last line is left out)."""
    if not report.exists():
        return []
    lines = []
    for line in report.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start helper processes; every one still running after the test is killed."""
    children = Procs(tmp_path)
    try:
        yield children
    finally:
        children.kill_all()


@pytest.fixture
def relays() -> Iterator[list[Any]]:
    """Relays (``RedisRelay``) a test makes; every one is closed after it."""
    made: list[Any] = []
    yield made
    for r in made:
        r.close()
