"""Shared fixtures: a private cache so tests never touch the user's, and tiny-run helpers."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Judges trained during tests (digits: seconds) go to a throwaway cache."""
    old = os.environ.get("GANEXPORT_CACHE")
    os.environ["GANEXPORT_CACHE"] = str(tmp_path_factory.mktemp("ganexport-cache"))
    yield
    if old is None:
        os.environ.pop("GANEXPORT_CACHE", None)
    else:
        os.environ["GANEXPORT_CACHE"] = old
