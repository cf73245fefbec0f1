"""Where the released weights are: one answer for every command, with no torch behind it.

The weights, the judge, their cards and records are package data of ``ganexport.weights`` (the
checkout's ``weights/`` folder), so ``importlib.resources`` finds them the same way in a wheel, an
editable install or a checkout, from any working directory. Nothing looks for a folder beside the
source tree: a wheel has none, and a command that missed the weights would train instead.

``$GANEXPORT_WEIGHTS`` points every command at another folder: your own releases (``ganexport
release --weights DIR``), or an empty one to see what a command does without any.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

from ganexport import catalog
from ganexport.repository import sha256

ENV = "GANEXPORT_WEIGHTS"
PACKAGE = "ganexport.weights"
# The datasets whose judge ships with the weights: for these a missing judge is a broken install, never a reason
# to train one quietly (every figure in the cards was measured with the shipped one).
JUDGE_DATASETS = ("fashion-mnist", "faces")


class ReleasedError(Exception):
    """The released weights cannot be located; the message is one line."""


def packaged_dir() -> Path:
    """The folder of the ``ganexport.weights`` package: site-packages in a wheel, ``weights/`` in a checkout."""
    try:
        found = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise ReleasedError(f"the package {PACKAGE} is not installed (an editable install older than it: "
                            f"reinstall with `make setup` or `pip install -e .`)") from None
    if not isinstance(found, Path):  # a zipped install: the files have no path that safetensors could open
        raise ReleasedError(f"{PACKAGE} is installed as {found}, not as a folder; install the wheel unzipped")
    return found


def weights_dir() -> Path:
    """The folder every command takes released weights from: ``$GANEXPORT_WEIGHTS``, else the package's."""
    override = os.environ.get(ENV)
    return Path(override).expanduser() if override else packaged_dir()


def where(directory: Path | None = None) -> str:
    """How ``directory`` (default: ``weights_dir()``) was found, in words, for messages and ``ganexport weights``."""
    directory = weights_dir() if directory is None else Path(directory)
    if os.environ.get(ENV) and directory == Path(os.environ[ENV]).expanduser():
        return f"${ENV}"
    try:
        packaged = packaged_dir()
    except ReleasedError:
        return "given"
    if directory != packaged:
        return "given"
    if (packaged.parent / "pyproject.toml").is_file():
        return f"the checkout's weights/, as the package {PACKAGE}"
    return f"the installed package {PACKAGE}"


@dataclass(frozen=True)
class ReleasedFile:
    """One released checkpoint: a catalog model's, or a judge's (``judge_<dataset>``)."""

    name: str
    path: Path
    size: int
    sha256: str
    card: Path | None


def _entry(name: str, path: Path) -> ReleasedFile:
    card = path.with_suffix(".md")
    return ReleasedFile(name, path, path.stat().st_size, sha256(path), card if card.is_file() else None)


def listing(directory: Path | None = None) -> list[ReleasedFile]:
    """Every released checkpoint in ``directory`` (default: ``weights_dir()``): models in catalog order, then judges."""
    directory = weights_dir() if directory is None else Path(directory)
    found = [_entry(m, directory / f"{m}.safetensors") for m in catalog.MODELS
             if (directory / f"{m}.safetensors").is_file()]
    return found + [_entry(p.stem, p) for p in sorted(directory.glob("judge_*.safetensors")) if p.is_file()]


def missing_checkpoint(models: str | list[str], directory: Path | None = None, runs: Path = Path("runs")) -> str:
    """Why there is no checkpoint for ``models``, in the user's paths: what build, export and eval say."""
    names = [models] if isinstance(models, str) else list(models)
    directory = weights_dir() if directory is None else Path(directory)
    one = len(names) == 1
    return (f"no checkpoint for {', '.join(names)}: {'no ' + names[0] + '.safetensors' if one else 'none'} in "
            f"the released weights ({directory}, {where(directory)}) and no run in "
            f"{Path(runs) / (names[0] if one else '<model>')}/")
