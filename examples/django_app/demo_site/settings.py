"""Settings of the example project: no database, one app (``streams``).

The upstream streams default to the built-in test server
(``python -m aikit_transports.testing``); environment variables of the same names point
the views elsewhere.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "demo_site.urls"
INSTALLED_APPS = ["streams"]
MIDDLEWARE: list[str] = []  # no GZipMiddleware: it would hold events back
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

#: Where `python -m aikit_transports.testing` serves.
LOCAL = "http://127.0.0.1:8765"

#: The upstream of the ``completion`` view: one stream per browser.
AIKIT_COMPLETION_URL = os.environ.get(
    "AIKIT_COMPLETION_URL", f"{LOCAL}/sse?count=20&delay=0.1&end=sentinel"
)
#: The upstream of the ``feed`` view, shared by every browser of a process.
AIKIT_FEED_URL = os.environ.get("AIKIT_FEED_URL", f"{LOCAL}/sse?count=100000&delay=1")
#: The bearer token the upstreams want (redacted from URLs, errors and logs).
AIKIT_UPSTREAM_TOKEN = os.environ.get("AIKIT_UPSTREAM_TOKEN", "example-token")

#: Options of the process-wide manager (aikit_transports.contrib.django.get_manager).
AIKIT_TRANSPORTS_MANAGER = {"max_transports": 50, "idle_timeout": 600.0}
