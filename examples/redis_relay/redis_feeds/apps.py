"""The app's configuration (add ``"redis_feeds"`` to ``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig


class RedisFeedsConfig(AppConfig):
    name = "redis_feeds"
    verbose_name = "Upstream streams relayed through Redis"
