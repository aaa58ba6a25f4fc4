"""What users write type-checks cleanly: ``tests/typing_snippets.py`` under mypy --strict, and
under pyright's strict mode when pyright is installed (``pip install pyright``; it needs node)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "tests" / "typing_snippets.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mypy_strict_is_clean_on_user_code() -> None:
    pytest.importorskip("mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-color-output", str(SNIPPETS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    # Only the snippets are judged here (the package is ``make typecheck``'s business); a line
    # without a file name is mypy itself failing.
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    problems = [
        line
        for line in lines
        if line.startswith("tests/typing_snippets.py") or line.startswith("mypy:")
    ]
    assert problems == [], "\n".join(problems)
    assert done.returncode in (0, 1), done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pyright_strict_is_clean_on_user_code(tmp_path: Path) -> None:
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which(
        "pyright"
    )
    if pyright is None:
        pytest.skip("pyright is not installed")
    config = {
        "typeCheckingMode": "strict",
        "extraPaths": [str(ROOT)],
        "reportUnnecessaryTypeIgnoreComment": "error",  # every expected error still happens
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        [
            pyright,
            "--outputjson",
            "--pythonpath",
            sys.executable,
            "-p",
            str(tmp_path / "pyrightconfig.json"),
            str(SNIPPETS),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.skip(f"pyright did not run: {(done.stderr or done.stdout)[:300]}")
    problems = [
        f"{d['range']['start']['line'] + 1}: {d['message']}" for d in report["generalDiagnostics"]
    ]
    assert problems == [], "\n".join(problems)
