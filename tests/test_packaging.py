"""Packaging: the Apache-2.0 license (file and metadata), and the hint an optional extra gives
when its library is missing."""

from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_file_is_the_full_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    for part in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ):
        assert part in text
    assert "LICENSE" in (ROOT / "MANIFEST.in").read_text(encoding="utf-8")


def test_the_metadata_names_the_license() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    assert config["metadata"]["license"] == "Apache-2.0"
    assert config["metadata"]["license_files"].split() == ["LICENSE"]
    installed = importlib.metadata.metadata("aikit-transports")  # as pip installed it
    assert installed["License"] == "Apache-2.0"


def test_django_missing_gives_the_pip_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "aikit_transports.contrib.django", raising=False)
    for name in [n for n in sys.modules if n == "django" or n.startswith("django.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "django", None)  # what Python does for a missing package
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'aikit-transports\[django\]'"):
        importlib.import_module("aikit_transports.contrib.django")
