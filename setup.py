"""Shim for tools that still call ``setup.py``; all metadata lives in setup.cfg."""

from __future__ import annotations

from setuptools import setup

setup()
