"""Every code example of the docs runs here, against the local servers.

Python examples live in ``docs/examples/*.py`` (the pages ``literalinclude`` them) and use the
addresses of ``python -m aikit_transports.testing``, so that a reader can run each as it is (all
but the TLS one, whose private CA and host are placeholders); each test swaps those for servers
of its own on free ports, runs the file and compares what it prints with
``docs/examples/<name>.txt`` (shown in the docs as its output) when there is one
(``AIKIT_UPDATE_DOC_OUTPUTS=1`` rewrites those files after a deliberate change: review the diff).
Small API examples are doctests (``>>>``) in the ``.rst`` pages, run by ``doctest``. The Django
examples (``examples/django_app``) run in ``tests/test_django.py``. The CLI's ``--help`` shown in
``docs/cli.rst`` is compared with the real one.
"""

from __future__ import annotations

import argparse
import doctest
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from aikit_transports.cli import _parser
from aikit_transports.testing import StreamServer
from aikit_transports.testing.ws import WebSocketServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"


@dataclass
class Servers:
    http: StreamServer
    ws: WebSocketServer
    tls: Optional[WebSocketServer] = None
    ca_path: str = ""


#: Where ``python -m aikit_transports.testing`` serves, which is what the examples use: each test
#: runs them against servers of its own on free ports instead.
HTTP_BASE = "http://127.0.0.1:8765"
WS_BASE = "ws://127.0.0.1:8766"


@dataclass
class Example:
    """How to run one example, and how to check what it printed."""

    runs: int = 1
    subprocess: bool = False
    #: Placeholders the local test server cannot stand for (TLS with a private CA) → local URL.
    tls: Optional[Callable[[Servers], dict[str, str]]] = None
    check: Optional[Callable[[list[str]], None]] = None
    needs: tuple[str, ...] = field(default_factory=tuple)
    #: The file of the expected output, when it is not ``<name>.txt`` (the same as another's).
    output: Optional[str] = None


def _check_debug_log(outputs: list[str]) -> None:
    out = outputs[0]
    assert "api_key=***" in out and "'Authorization': '***'" in out
    assert "abc123" not in out and "s3cr3t" not in out
    assert "aikit_transports.sse: " in out
    assert "HTTP 200 OK" in out
    assert "event type=message id=1 data='event 1'" in out


def _check_resume(outputs: list[str]) -> None:
    assert outputs == ["handling 1\nhandling 2\nhandling 3\n", "handling 4\nhandling 5\n"]


CASES: dict[str, Example] = {
    "quickstart_iterate.py": Example(),
    "quickstart_callbacks.py": Example(),
    "llm_openai.py": Example(),
    "llm_anthropic.py": Example(),
    "llm_cut.py": Example(),
    "llm_resume.py": Example(),
    "sse_resume.py": Example(runs=2, check=_check_resume),
    "ws_json.py": Example(),
    "ws_send_queue.py": Example(),
    "ndjson_stream.py": Example(),
    "long_poll.py": Example(),
    "reconnect_give_up.py": Example(),
    "backpressure_drop_oldest.py": Example(),
    "manager_many.py": Example(),
    "fallback_connect.py": Example(),
    "threading_callbacks.py": Example(),
    "errors_handling.py": Example(),
    "security_tls.py": Example(
        tls=lambda s: {
            "wss://internal.example.com/ws": s.tls.url("/echo") if s.tls else "",
            "/etc/ssl/internal-ca.pem": s.ca_path,
        },
    ),
    "debug_logging.py": Example(
        subprocess=True,  # it configures logging for the whole process
        check=_check_debug_log,
    ),
    "migrate_sseclient_before.py": Example(
        needs=("sseclient",), output="migrate_sseclient_after.txt"
    ),
    "migrate_sseclient_after.py": Example(),
    "migrate_iter_lines_before.py": Example(output="migrate_iter_lines_after.txt"),
    "migrate_iter_lines_after.py": Example(),
    "migrate_websocketapp_before.py": Example(output="migrate_websocketapp_after.txt"),
    "migrate_websocketapp_after.py": Example(),
}


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    with StreamServer() as http, WebSocketServer() as ws:
        yield Servers(http, ws)


@pytest.fixture
def tls_servers(servers: Servers, tmp_path: Path) -> Iterator[Servers]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    with WebSocketServer(ssl_context=context) as tls:
        yield Servers(servers.http, servers.ws, tls, str(ca_path))


def _source(name: str, case: Example, servers: Servers) -> str:
    """The example with the test server's addresses swapped for those of this test's servers."""
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    urls = (
        case.tls(servers)
        if case.tls
        else {HTTP_BASE: servers.http.base_url, WS_BASE: servers.ws.url("")}
    )
    assert any(url in source for url in urls), f"{name} uses none of {sorted(urls)}"
    for placeholder, local in urls.items():
        source = source.replace(placeholder, local)
    return source


def _run_in_process(name: str, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = compile(source, str(EXAMPLES / name), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(EXAMPLES / name)})
    captured = capsys.readouterr()
    assert captured.err == "", captured.err
    return captured.out


def _run_subprocess(name: str, source: str, cwd: Path) -> str:
    script = cwd / name
    script.write_text(source, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_docs_example(
    name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    for module in case.needs:
        pytest.importorskip(module)
    servers: Servers = request.getfixturevalue("tls_servers" if case.tls else "servers")
    monkeypatch.chdir(tmp_path)
    source = _source(name, case, servers)
    outputs = []
    for _ in range(case.runs):
        if case.subprocess:
            outputs.append(_run_subprocess(name, source, tmp_path))
        else:
            outputs.append(_run_in_process(name, source, capsys))
    if case.check is not None:
        case.check(outputs)
    expected = EXAMPLES / (case.output or name.replace(".py", ".txt"))
    if case.output:
        assert expected.exists()
    if expected.exists():
        if os.environ.get("AIKIT_UPDATE_DOC_OUTPUTS") == "1":  # after a deliberate change
            expected.write_text(outputs[0], encoding="utf-8")
        assert outputs[0] == expected.read_text(encoding="utf-8")


def test_every_example_file_is_run_and_shown() -> None:
    files = {p.name for p in EXAMPLES.glob("*.py")}
    assert files == set(CASES), "docs/examples and CASES differ"
    pages = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.rst"))
    for name in sorted(files):
        assert f"examples/{name}" in pages, f"{name} is not shown on any page"
        output = name.replace(".py", ".txt")
        if (EXAMPLES / output).exists():
            assert f"examples/{output}" in pages, f"the output of {name} is not shown"


#: The widest line a code block shows whole on a page (furo, at the default font size); wider
#: Python would be cut at the right edge. (Plain-text outputs wrap instead: docs/_static.)
PAGE_COLUMNS = 88


def test_shown_code_fits_the_page() -> None:
    shown = [*EXAMPLES.glob("*.py"), *(ROOT / "examples" / "django_app").rglob("*.py")]
    too_wide = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in shown
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > PAGE_COLUMNS
    ]
    assert not too_wide, f"lines over {PAGE_COLUMNS} columns: {too_wide}"


_PY_BLOCK = re.compile(r"^( *)\.\. code-block:: (python|pycon|py|python3)\s*$", re.MULTILINE)

#: Pages whose snippets are checked elsewhere, or not yet: shown as skips, never silently.
_NOT_CHECKED_HERE = {
    "scaling.rst": "the Redis page (contrib.redis) keeps schematic snippets; its own tests run "
    "the relay and the readers",
}


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.rst")))
def test_python_in_the_pages_is_executed(page: str) -> None:
    """Python in a page is a literalinclude of an executed file, or a doctest (run below)."""
    if page in _NOT_CHECKED_HERE:
        pytest.skip(_NOT_CHECKED_HERE[page])
    text = (DOCS / page).read_text(encoding="utf-8")
    for match in _PY_BLOCK.finditer(text):
        body = text[match.end() :].lstrip("\n").split("\n\n")[0]
        assert body.lstrip().startswith(">>>"), (
            f"{page}: a python code block that is not a doctest; put the code in "
            "docs/examples/ and literalinclude it"
        )


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.rst")))
def test_doctests_in_the_pages(page: str) -> None:
    result = doctest.testfile(
        str(DOCS / page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {page} (see the output)"


class _MetavarOnce(argparse.HelpFormatter):
    """The help as argparse of Python 3.13 lays it out, on older Pythons too.

    As of 3.13 an option's value is named once (``-H, --header 'NAME: VALUE'``), where older
    versions repeat it after each spelling (``-H 'NAME: VALUE', --header 'NAME: VALUE'``); and
    3.9 heads the options "optional arguments:". The page shows the 3.13 form, so the comparison
    checks the options and their help, not the argparse version."""

    def start_section(self, heading: Optional[str]) -> None:
        super().start_section("options" if heading == "optional arguments" else heading)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(action.option_strings) + " " + value


def test_cli_help_in_the_docs_is_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(PAGE_COLUMNS))
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    listen = sub.choices["listen"]  # type: ignore[attr-defined]
    if sys.version_info < (3, 13):  # the same layout on every Python (see _MetavarOnce)
        listen.formatter_class = type("Formatter", (_MetavarOnce, listen.formatter_class), {})
    real = listen.format_help()
    path = DOCS / "cli_listen_help.txt"
    if os.environ.get("AIKIT_UPDATE_DOC_OUTPUTS") == "1":
        path.write_text(real, encoding="utf-8")
    shown = path.read_text(encoding="utf-8")
    assert shown == real, f"{path} is out of date: AIKIT_UPDATE_DOC_OUTPUTS=1 rewrites it"
