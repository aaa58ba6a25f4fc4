"""``path("feeds/", include("redis_feeds.urls"))`` in the project's URLconf."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("<slug:name>/", views.feed, name="redis-feed")]
