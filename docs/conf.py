"""Sphinx configuration for the aikit-transports documentation."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
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
    (
        r"py:(class|obj|exc|data)",
        r"(collections\.abc|typing|enum|logging|ssl|queue|socket|"
        r"threading|concurrent\.futures|types|datetime|pathlib|requests|urllib3|websocket|"
        r"websockets|django|redis)\..*",
    ),
    # type variables (``T``; bare where a return type or ``Callable`` argument shows them)
    (r"py:(class|obj)", r"(aikit_transports\..*\.)?_?[A-Z][A-Z]?"),
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
    "aikit_transports.transports.callbacks.Callbacks": None,  # on/once/off: shown as members
    "aikit_transports.transports.delivery.Delivery": None,  # internal: consumers and dispatch
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
    bases[:] = [base for base in shown if base is not object]  # no "Bases: object"


# -- every parameter has a description ----------------------------------------------------------

_PARAM_FIELD = re.compile(r"^\s*:(?:param|ivar)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:", re.MULTILINE)
_SKIPPED_PARAMS = {"self", "cls", "args", "kwargs"}


def _described(obj: Any, lines: list[str]) -> set[str]:
    """The parameter names described: ``:param x:`` / ``:ivar x:`` fields, here or (for a class)
    in a base class of the package, and attributes documented with ``#:`` comments."""
    described = set(_PARAM_FIELD.findall("\n".join(lines)))
    if inspect.isclass(obj):
        for cls in obj.__mro__:
            if not cls.__module__.startswith("aikit_transports"):
                continue
            described.update(_PARAM_FIELD.findall(inspect.getdoc(cls) or ""))
            try:
                attr_docs = ModuleAnalyzer.for_module(cls.__module__).find_attr_docs()
            except PycodeError:
                continue
            described.update(attr for (owner, attr) in attr_docs if owner == cls.__qualname__)
    return described


def _check_parameters(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Warn (an error under -W) for a parameter of a documented callable without a description.

    For a class, its ``__init__``'s parameters must be described in the docstring of the class
    (or of a base class), or as attributes with ``#:`` comments (dataclass fields).
    """
    if what not in ("class", "exception", "function", "method"):
        return
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        return  # members, not parameters
    target = obj.__init__ if what in ("class", "exception") else obj
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    described = _described(obj, lines)
    missing = {
        param
        for param in parameters
        if param not in _SKIPPED_PARAMS and not param.startswith("_") and param not in described
    }
    for param in sorted(missing):
        logger.warning(
            "parameter %r of %s has no description (:param %s: ...)",
            param,
            name,
            param,
            location=(app.env.docname, None),
            type="aikit",
            subtype="param",
        )


# -- references by the names code uses --------------------------------------------------------

#: Internal names that signatures show, documented nowhere on purpose.
_INTERNAL = {"Scheduler", "aikit_transports.timers.Scheduler"}


def _candidates(target: str, module: str, cls: str) -> list[str]:
    """Where an object named ``target`` in code (in ``module``, class ``cls``) is documented.

    Docstrings and annotations name objects as their module sees them (``TransportState``,
    ``aikit_transports.testing.exchange.RecordedRequest``, a member of the class at hand); the
    reference documents each where users import it from (``aikit_transports.TransportState``,
    ``aikit_transports.testing.RecordedRequest``), and a member where it is defined (an
    inherited ``SSETransport.iter_events`` on ``BaseTransport``).
    """
    names = [target]
    if module:
        if cls:
            names.append(f"{module}.{cls}.{target}")
        parts = module.split(".")
        names += [".".join([*parts[:i], target]) for i in range(len(parts), 0, -1)]
    found = []
    for name in names:
        head, _, last = name.rpartition(".")
        parts = head.split(".")
        # as a package re-exports it: a.b.c.X -> a.b.X -> a.X
        found += [".".join([*parts[:keep], last]) for keep in range(len(parts), 0, -1)]
        found += _defining_classes(name)
    return found


def _defining_classes(name: str) -> list[str]:
    """``pkg.mod.Class.member`` as ``pkg.mod.Base.member`` and ``pkg.Base.member`` for each
    base class of ``Class`` that defines ``member``."""
    owner, _, member = name.rpartition(".")
    module_name, _, class_name = owner.rpartition(".")
    if not (module_name and member and class_name):
        return []
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        return []
    found = []
    for base in cls.__mro__[1:]:
        if member in vars(base):
            package = base.__module__.rsplit(".", 1)[0]
            found += [
                f"{where}.{base.__qualname__}.{member}" for where in (base.__module__, package)
            ]
    return found


def _is_foreign(target: str, module: str, cls: str) -> bool:
    """Whether ``target``, as seen from ``module`` (or from the module that defines its class
    ``cls``), names something of another package: ``BaseHTTPRequestHandler`` imported by name
    from the standard library, say."""
    try:
        namespaces: list[Any] = [importlib.import_module(module)] if module else []
    except ImportError:
        return False
    owner_class = getattr(namespaces[0], cls, None) if namespaces and cls else None
    if owner_class is not None:
        namespaces.append(importlib.import_module(owner_class.__module__))
    for namespace in namespaces:
        obj: Any = namespace
        for part in target.split("."):
            obj = getattr(obj, part, None)
        owner = getattr(obj, "__module__", None) or ""
        if obj is not None and owner and not owner.startswith("aikit_transports"):
            return True
    return False


def _resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference that failed, by the names in :func:`_candidates`."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    module = node.get("py:module") or ""
    cls = node.get("py:class") or ""
    if target in _INTERNAL or _is_foreign(target, module, cls):
        return contnode  # plain text, like every name of the standard library
    domain = env.get_domain("py")
    for candidate in dict.fromkeys(_candidates(target.lstrip("~."), module, cls)):
        if candidate == target:
            continue
        retry = node.deepcopy()
        retry["reftarget"] = candidate
        found = domain.resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], candidate, retry, contnode
        )
        if found is not None:
            return found
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _check_parameters)
    app.connect("missing-reference", _resolve)
