"""Keep secrets out of reprs, logs and errors: URLs and headers shown with ``***``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "redact_url",
    "redact_headers",
    "is_secret_header",
    "describe_exception",
    "redact_text",
    "SECRET_MARK",
]

SECRET_MARK = "***"
_SECRET_QUERY = re.compile(r"token|key|secret|password|passwd|auth|sig|session|credential", re.I)
_SECRET_HEADER = re.compile(r"authorization|cookie|token|key|secret|password|auth|session", re.I)


def redact_url(url: Optional[str]) -> Optional[str]:
    """The URL with its password, and query values whose names look secret, replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return SECRET_MARK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = (
            f"{user}:{SECRET_MARK}@{hostport}" if ":" in userinfo else f"{SECRET_MARK}@{hostport}"
        )
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='')}={SECRET_MARK if _SECRET_QUERY.search(k) else quote(v, safe='')}"
            for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_headers(headers: Optional[Mapping[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` with the values of credential-like headers replaced by ``***``."""
    if not headers:
        return {}
    return {k: (SECRET_MARK if _SECRET_HEADER.search(k) else v) for k, v in headers.items()}


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries credentials (Authorization, Cookie, API keys...):
    redacted in output, and dropped when a redirect leads to another origin."""
    return _SECRET_HEADER.search(name) is not None


def redact_text(text: str, limit: int = 300) -> str:
    """Free text (a library's error message) with URLs redacted and query strings cut, at most
    ``limit`` characters: ``requests`` and ``urllib3`` put whole URLs in their messages."""
    words = []
    for word in text.split():
        if "://" in word:
            word = redact_url(word.strip("'\"(),")) or SECRET_MARK
        elif "?" in word and "=" in word:
            word = word.split("?", 1)[0] + "?" + SECRET_MARK
        words.append(word)
    return " ".join(words)[:limit]


def describe_exception(exc: BaseException) -> str:
    """One credential-free line about a library exception: its type and its redacted message."""
    text = redact_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
