"""Keep secrets out of reprs, logs and errors: URLs and headers shown with ``***``.

A query parameter or header is secret when its name contains one of ``token``, ``key``,
``secret``, ``password``, ``passwd``, ``pwd``, ``auth``, ``sig``, ``signature``, ``jwt``,
``session`` or ``credential`` (any case), or the word ``pass`` (``pass``, ``x-pass``,
``db_pass``, ``userPass``, ``passphrase``, ``passcode``; not ``passenger`` or ``bypass``);
header names also count ``cookie``. The same rule applies to the lines of ``urllib3``'s
loggers: ``install_urllib3_filter()``, called when ``aikit_transports`` is imported,
adds a :class:`RedactingFilter` to them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from .logs import server_text

__all__ = [
    "redact_url",
    "redact_text",
    "redact_headers",
    "is_secret_header",
    "is_secret_query_name",
    "describe_exception",
    "RedactingFilter",
    "install_urllib3_filter",
    "URLLIB3_LOGGERS",
    "SECRET_MARK",
]

SECRET_MARK = "***"

_WORDS = r"token|key|secret|password|passwd|pwd|auth|sig|signature|jwt|session|credential"
# ``pass`` only as a word of its own: at the start of the name, after a non-letter, or as the
# capitalised part of a camelCase name, and not followed by other letters (save ``wd``, ``word``,
# ``phrase`` or ``code``), so that ``passenger``, ``compass`` and ``bypass`` stay readable.
_PASS = (
    r"(?i:(?<![a-z])pass(?:wd|word|phrase|code)?(?![a-z]))"
    r"|(?<=[a-z])(?:Pass|PASS)(?:wd|word|phrase|code)?(?![a-z])"
)
_SECRET_QUERY = re.compile(rf"(?i:{_WORDS})|{_PASS}")
_SECRET_HEADER = re.compile(rf"(?i:cookie|{_WORDS})|{_PASS}")

# In free text (log lines, exception messages): a password in a URL's userinfo, and the
# ``name=value`` pairs of a query string (after ``?``, ``&`` or ``;``).
_USERINFO_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/@]*@")
_QUERY_PAIR = re.compile(r"([?&;])([^\s=&;?#'\"]+)=([^\s&;#'\"]*)")


def is_secret_query_name(name: str) -> bool:
    """Whether a query parameter of this name carries a credential (see the module doc)."""
    return _SECRET_QUERY.search(name) is not None


def redact_url(url: Optional[str]) -> Optional[str]:
    """The URL with its password, and query values whose names look secret, replaced by ``***``.

    :param url: the URL to show (``None`` or empty: returned as it is).
    """
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
            f"{quote(k, safe='')}={SECRET_MARK if is_secret_query_name(k) else quote(v, safe='')}"
            for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _redact_pair(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if is_secret_query_name(unquote(name)):
        value = SECRET_MARK
    return f"{sep}{name}={value}"


def redact_text(text: str) -> str:
    """``text`` with the URL passwords and secret query values it holds replaced by ``***``,
    wherever they appear (a whole URL, a path with its query, a URL quoted in a message).

    :param text: any text, a library's message say.
    """
    if "=" in text:
        text = _QUERY_PAIR.sub(_redact_pair, text)
    if "@" in text:
        text = _USERINFO_PASSWORD.sub(rf"\g<1>{SECRET_MARK}@", text)
    return text


def redact_headers(headers: Optional[Mapping[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` with the values of credential-like headers replaced by ``***``.

    :param headers: header names to values (``None``: an empty dict is returned).
    """
    if not headers:
        return {}
    return {k: (SECRET_MARK if is_secret_header(k) else v) for k, v in headers.items()}


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries credentials (Authorization, Cookie, API keys,
    signatures...): its value is redacted in output."""
    return _SECRET_HEADER.search(name) is not None


def describe_exception(exc: BaseException) -> str:
    """One credential-free line about a library exception: its type and message, with URLs
    redacted and query strings cut (``requests`` and ``urllib3`` put whole URLs in messages),
    control characters escaped and at most 300 characters (it may quote what a server sent)."""
    words = []
    for word in str(exc).split():
        if "://" in word:
            word = redact_url(word.strip("'\"(),")) or SECRET_MARK
        elif "?" in word and "=" in word:
            word = word.split("?", 1)[0] + "?" + SECRET_MARK
        words.append(word)
    text = server_text(" ".join(words), 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets (see :func:`redact_text`) in each record it sees:
    the message is formatted with its arguments and redacted, and so is the traceback.

    :param name: as for :class:`logging.Filter` (``""``: every record).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it, without the arguments
            record.msg, record.args = redact_text(str(record.msg)), None
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


#: The loggers of ``urllib3`` that log URLs (a filter on a logger sees only its own records).
URLLIB3_LOGGERS = (
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "urllib3.http2.connection",
    "urllib3.contrib.pyopenssl",
    "urllib3.contrib.emscripten.response",
)

_urllib3_filter = RedactingFilter()


def install_urllib3_filter() -> None:
    """Add the redacting filter to ``urllib3``'s loggers (idempotent): with logging at DEBUG,
    ``urllib3`` prints each request line, query string included."""
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _urllib3_filter not in logger.filters:
            logger.addFilter(_urllib3_filter)
