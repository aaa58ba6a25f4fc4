"""Sphinx configuration for the aikit-transports documentation."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from sphinx.util import logging as sphinx_logging

ROOT = Path(__file__).resolve().parent.parent
logger = sphinx_logging.getLogger("aikit_transports.docs")
sys.path.insert(0, str(ROOT))


def _read_version() -> str:
    """The ``__version__`` string of the package, read without importing it."""
    init = ROOT / "aikit_transports" / "__init__.py"
    try:
        text = init.read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


project = "aikit-transports"
author = "aikit-transports contributors"
copyright = "aikit-transports contributors"
release = _read_version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Types go with the parameters a docstring describes (every one: see _check_parameters below),
# never as a bare list of names without a word about them.
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"show-inheritance": True}

# Every cross-reference must resolve (`make docs` builds with -n -W). The standard library and
# the packages we stand on are not linked (the build has no network for intersphinx), so
# references to them are plain text; so are type variables.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:(class|obj|exc|data)", r"(collections\.abc|typing|enum|logging|ssl|queue|socket|"
     r"threading|concurrent\.futures|types|datetime|pathlib|requests|urllib3|websocket|"
     r"websockets|django|redis)\..*"),
    (r"py:(class|obj)", r"aikit_transports\..*\.T"),
]

html_title = f"aikit-transports {release}"
html_theme = "furo" if importlib.util.find_spec("furo") is not None else "alabaster"
html_static_path = ["_static"]
html_css_files = ["custom.css"]


# -- "Bases:" names documented classes only ---------------------------------------------------

#: Private or internal bases, shown as the documented class they stand for.
_SHOWN_BASE = {
    "aikit_transports.transports.http_base.HTTPTransportBase": "BaseTransport",
    "aikit_transports.events._EventFields": None,  # Event's fields: nothing to show
}


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Replace internal bases by the documented class they build on (or drop them)."""
    shown: list[type] = []
    for base in bases:
        full = f"{base.__module__}.{base.__qualname__}"
        if full not in _SHOWN_BASE:
            shown.append(base)
            continue
        replacement = _SHOWN_BASE[full]
        for ancestor in base.__mro__[1:]:
            if ancestor.__name__ == replacement and ancestor not in shown:
                shown.append(ancestor)
                break
    bases[:] = shown or [object]


# -- every parameter has a description ----------------------------------------------------------

_PARAM_FIELD = re.compile(r"^\s*:param\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:", re.MULTILINE)
_SKIPPED_PARAMS = {"self", "cls", "args", "kwargs"}


def _check_parameters(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Warn (an error under -W) for a parameter of a documented callable without ``:param:``.

    For a class, its ``__init__``'s parameters must be described in the class docstring.
    """
    if what not in ("class", "exception", "function", "method"):
        return
    target = obj
    if what in ("class", "exception"):
        if "__init__" not in vars(obj) and not any(
            "__init__" in vars(base) for base in obj.__mro__[1:-1] if base.__module__.startswith("aikit")
        ):
            return
        target = obj.__init__
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    described = set(_PARAM_FIELD.findall("\n".join(lines)))
    for param in parameters.values():
        if param.name in _SKIPPED_PARAMS or param.name.startswith("_"):
            continue
        if param.name not in described:
            logger.warning(
                "parameter %r of %s has no description (:param %s: ...)",
                param.name,
                name,
                param.name,
                location=(app.env.docname, None),
                type="aikit",
                subtype="param",
            )


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _check_parameters)
