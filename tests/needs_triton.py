"""Imported first by a module of tests that start the real Triton: that module skips, saying why, where the
serve extra (tritonclient, the bundled server binary) is missing, instead of failing test by test."""

import pytest

from ganexport.serving.triton_binary import find_tritonserver
from ganexport.serving.triton_server import ServerError

httpclient = pytest.importorskip("tritonclient.http")

try:
    find_tritonserver()
except ServerError as e:  # pragma: no cover - only without the serve extra
    pytest.skip(str(e), allow_module_level=True)
