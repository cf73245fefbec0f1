"""Where ganexport keeps what it makes once per machine and can always make again (user-trained judges, the
rendered faces set): ``$GANEXPORT_CACHE``, else ``~/.cache/ganexport``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("GANEXPORT_CACHE", Path.home() / ".cache" / "ganexport"))
