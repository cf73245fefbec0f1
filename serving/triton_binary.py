"""Where the tritonserver bundled in nvidia-pytriton lives, and what it needs around it to run.

The wheel bundles Triton 2.51 with the Python backend only (no native ONNX
Runtime or libtorch backends) and keeps one Python-backend stub per Python
version in a separate tree. pytriton's own launcher wraps Python callables; we
run the binary directly on a plain ``--model-repository`` (the recipe is in
shared/FINDINGS.md), so this module finds the binary, gathers the backend
directory Triton expects and sets the environment the stubs need.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from ganexport.serving.triton_log import ServerError

INSTALL_HINT = "install the serve extra: pip install 'ganexport[serve]'"


def _pytriton_root() -> Path | None:
    """``pytriton/tritonserver`` inside the installed wheel, found without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def find_tritonserver(triton_bin: str | os.PathLike | None = None) -> Path:
    """The tritonserver binary: ``triton_bin`` when given, else the one bundled in nvidia-pytriton."""
    if triton_bin is not None:
        path = Path(triton_bin).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerError(f"no executable tritonserver at {path}")
        return path.resolve()
    root = _pytriton_root()
    path = root / "bin" / "tritonserver" if root else None
    if path is None or not path.is_file():
        raise ServerError(f"the tritonserver bundled in nvidia-pytriton was not found; {INSTALL_HINT}")
    return path


def server_root(binary: Path) -> Path:
    """The dir holding ``backends/`` and ``python_backend_stubs/``: beside the binary, else pytriton's."""
    for root in (binary.parent.parent, _pytriton_root()):
        if root is not None and (root / "backends" / "python" / "libtriton_python.so").is_file():
            return root
    raise ServerError(f"no Triton Python backend next to {binary} or in nvidia-pytriton; {INSTALL_HINT}")


def make_backend_dir(root: Path) -> Path:
    """A temp ``B/python/`` of symlinks: the backend, its utils, and the stub for THIS Python version.

    Triton looks for the stub beside libtriton_python.so, so the three files are gathered here.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the bundled Triton has no Python backend stub for Python {version}")
    backend_dir = Path(tempfile.mkdtemp(prefix="ganexport-triton-backends-"))
    python_dir = backend_dir / "python"
    python_dir.mkdir()
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        (python_dir / src.name).symlink_to(src)
    return backend_dir


def server_env() -> dict[str, str]:
    """The environment the stubs need to run model.py with this interpreter's packages.

    The stub runs the first ``python3`` on PATH, so the venv's bin goes first;
    LD_LIBRARY_PATH points at this Python's libpython, or the stub would load the
    system libpython beside our stdlib.
    """
    env = dict(os.environ)
    bin_dir = Path(sys.prefix) / "bin" if sys.prefix != sys.base_prefix else Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")]).rstrip(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return env
