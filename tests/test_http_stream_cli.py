"""``aikit-transports listen --type http-stream`` and ``demo --type http-stream``, as a user runs
them (a separate process, so the CLI's logging and signal set-up stay out of the test run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aikit_transports.testing import StreamServer


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aikit_transports", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_listen_prints_each_line_and_reports_errors_on_stderr(
    stream_server: StreamServer,
) -> None:
    url = stream_server.url("/ndjson?count=6&drop_every=4&malformed_every=5&end=204")
    done = run_cli("listen", url, "--type", "http-stream", "--json")
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["id"] for p in printed] == ["1", "2", "3", "4", "5", "6"]
    assert printed[0] == {"type": "message", "data": {"id": 1, "data": "line 1"}, "id": "1"}
    assert "NDJSON line" in done.stderr and "reconnecting" in done.stderr
    assert "Traceback" not in done.stderr


def test_listen_plain_output_and_count(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=50&end=hold")
    done = run_cli("listen", url, "--type", "http-stream", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        '{"id": 1, "data": "line 1"}',
        '{"id": 2, "data": "line 2"}',
    ]


@pytest.mark.slow
def test_demo_shows_drops_and_resumes_without_loss() -> None:
    done = run_cli("demo", "--type", "http-stream", "--count", "15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Last-Event-ID: 12" in done.stdout
    assert "nothing lost, nothing repeated" in done.stdout
