"""URLs of the example project."""

from __future__ import annotations

from django.urls import path
from streams import views

urlpatterns = [
    path("completion", views.completion),
    path("feed", views.feed),
]
