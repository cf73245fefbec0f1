"""The models folder: what ``ganexport import`` wrote, read back as catalog ModelSpecs, with no torch.

An imported model is a folder ``<models>/<name>/`` holding two files:

- ``entry.json``, the import record: the spec fields (kind, whether it is conditional, description, nets
  and the role its Triton model serves, hyper-parameters, the image shape it serves), the source format with
  the options it was imported with, and the source file's name and sha256;
- ``weights.safetensors``, its weights converted, a ganexport checkpoint that build reads like any other.

The record says everything the catalog needs, so a new format (another project's checkpoints) writes the
same record with its own nets and options, and nothing here changes. ``<models>`` is ``./models`` in the
working directory (beside ``runs/`` and ``model_repository/``), or the folder ``$GANEXPORT_MODELS`` names;
a wheel install reads it the same from any directory.

Entries are installed whole (a staged folder renamed into place), so a reader never sees half of one,
and a failed import leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ganexport import catalog

ENV = "GANEXPORT_MODELS"
DEFAULT_DIR = Path("models")
ENTRY_FILE = "entry.json"
WEIGHTS_FILE = "weights.safetensors"
RECORD_VERSION = 1
# Triton model names, file names and URL paths alike: letters, digits, '_' and '-', not hidden.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# An entry's nets are resolved by import path when a model is built: only ganexport's own importers, so a
# models folder from elsewhere cannot name arbitrary code (the module format names its module in its options).
NETS_PREFIX = "ganexport.export.importers."
RESERVED = ("all",)  # what --model takes besides model names


class EntryError(Exception):
    """An entry that cannot be read or written; the message is one line naming it."""


def models_dir() -> Path:
    """Where imported models live: ``$GANEXPORT_MODELS``, else ``./models``."""
    override = os.environ.get(ENV)
    return Path(override).expanduser() if override else DEFAULT_DIR


def where(folder: Path | None = None) -> str:
    """How the folder was found, for messages: ``$GANEXPORT_MODELS (path)`` or the path itself."""
    folder = models_dir() if folder is None else Path(folder)
    return f"${ENV} ({folder})" if os.environ.get(ENV) else str(folder)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Entry:
    """One folder of the models folder: its spec, or why it cannot be read."""

    name: str
    path: Path
    spec: catalog.ModelSpec | None
    problem: str | None = None


def spec_from_record(record: Mapping[str, Any], entry_dir: Path) -> catalog.ModelSpec:
    """The ModelSpec an import record describes (raises EntryError, naming what is wrong)."""
    try:
        if record["record_version"] != RECORD_VERSION:
            raise EntryError(f"record version {record['record_version']}, this ganexport reads {RECORD_VERSION}")
        nets = dict(record["nets"])
        outside = [f for f in nets.values() if not str(f).startswith(NETS_PREFIX)]
        if outside:
            raise EntryError(f"nets outside {NETS_PREFIX}*: {', '.join(outside)}")
        source = record["source"]
        origin = catalog.Origin(format=record["format"], source=source["file"], sha256=source["sha256"],
                                options=dict(record.get("options", {})), weights=str(entry_dir / WEIGHTS_FILE))
        return catalog.ModelSpec(
            name=record["name"], family=record["format"], dataset="", description=record["description"],
            nets=nets, hparams={"full": dict(record["hparams"])}, serves={"": record["role"]},
            kind=record["kind"], conditional=bool(record.get("conditional", False)),
            image_shape=tuple(int(d) for d in record["image_shape"]), origin=origin,
        )
    except KeyError as e:
        raise EntryError(f"no {e.args[0]!r} in the record") from None
    except (TypeError, ValueError) as e:
        raise EntryError(str(e).splitlines()[0]) from None


def read(entry_dir: Path) -> catalog.ModelSpec:
    """The spec of the entry in ``entry_dir`` (raises EntryError naming the entry and the problem)."""
    entry_dir = Path(entry_dir)
    try:
        record = json.loads((entry_dir / ENTRY_FILE).read_text())
        spec = spec_from_record(record, entry_dir)
    except (OSError, json.JSONDecodeError) as e:
        raise EntryError(f"{entry_dir}: unreadable {ENTRY_FILE} ({e})") from None
    except EntryError as e:
        raise EntryError(f"{entry_dir}: {e}") from None
    if spec.name != entry_dir.name:
        raise EntryError(f"{entry_dir}: the record names {spec.name!r}, not its folder's name")
    if spec.name in catalog.MODELS or not NAME.fullmatch(spec.name):
        raise EntryError(f"{entry_dir}: {spec.name!r} cannot be an imported model's name (a catalog model's, or not "
                         f"a Triton name)")
    if not (entry_dir / WEIGHTS_FILE).is_file():
        raise EntryError(f"{entry_dir}: no {WEIGHTS_FILE}")
    return spec


def entries(folder: Path | None = None) -> list[Entry]:
    """Every entry of the folder by name, those that cannot be read with their problem."""
    folder = models_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (d / ENTRY_FILE).is_file():
            continue  # not an entry (a user's own folder); nothing to say
        try:
            found.append(Entry(d.name, d, read(d)))
        except EntryError as e:
            found.append(Entry(d.name, d, None, str(e)))
    return found


_cache: dict[tuple, dict[str, catalog.ModelSpec]] = {}
_warned: set[str] = set()


def specs(folder: Path | None = None) -> dict[str, catalog.ModelSpec]:
    """The readable entries' specs by name, re-read only when an entry changed. An entry that cannot be
    read is left out and said once on stderr (``ganexport models`` lists it with its problem)."""
    folder = models_dir() if folder is None else Path(folder)
    try:
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob(f"*/{ENTRY_FILE}")))
    except OSError:
        stamp = ()
    key = (str(folder.resolve()), stamp)
    if key not in _cache:
        found = entries(folder)
        for e in found:
            if e.problem and e.problem not in _warned:
                _warned.add(e.problem)
                print(f"warning: imported model skipped: {e.problem}", file=sys.stderr)
        _cache.clear()
        _cache[key] = {e.name: e.spec for e in found if e.spec is not None}
    return dict(_cache[key])


# --------------------------------------------------------------------------- writing


def check_name(name: str, folder: Path | None = None, *, replace: bool = False) -> None:
    """EntryError unless ``name`` can be a new imported model: a Triton name, no model or Triton model of the
    catalog (nor its TorchScript twin), and not taken in the folder unless ``replace``."""
    folder = models_dir() if folder is None else Path(folder)
    if not NAME.fullmatch(name):
        raise EntryError(f"--name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    if name.lower() in RESERVED:
        raise EntryError(f"--name {name!r}: --model {name.lower()} means every model; choose another name")
    # Names are compared without case: the models folder and the Triton repository may lie on a file system
    # that ignores it (macOS, Windows), where DCGAN and dcgan are one folder.
    suffixes = catalog.RUNTIME_SUFFIX.values()
    published = {(name + suffix).lower() for suffix in suffixes}  # the Triton models build publishes for it
    own = {n.lower(): n for n in set(catalog.MODELS) | {s.name + suffix for spec in catalog.MODELS.values()
                                                          for s in spec.signatures() for suffix in suffixes}}
    clash = sorted(own[n] for n in published | {name.lower()} if n in own)
    if clash:
        raise EntryError(f"--name {name!r}: {clash[0]} is a model of ganexport's own catalog; choose another name")
    others = {e.name: {(e.name + suffix).lower() for suffix in suffixes} for e in entries(folder) if e.name != name}
    taken = [other for other, names in others.items() if names & published]
    if taken:
        raise EntryError(f"--name {name!r}: its Triton models' names clash with those of the imported model "
                         f"{taken[0]} (names are compared without case)")
    if (folder / name).exists() and not replace:
        raise EntryError(f"{folder / name} exists: pass --replace to import over it, or choose another --name")


def staging_dir(folder: Path | None = None) -> Path:
    """A fresh hidden folder inside the models folder to write an entry into before ``install``."""
    folder = models_dir() if folder is None else Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".import-", dir=folder))
    except OSError as e:
        raise EntryError(f"cannot write into {where(folder)}: {e.strerror or e}") from None


def write_record(staged: Path, record: Mapping[str, Any]) -> None:
    """The record as ``entry.json`` in a staged entry, checked by reading it back as the catalog will."""
    spec_from_record(record, staged)  # a record the catalog cannot read is a bug of its importer: fail here
    (staged / ENTRY_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def install(staged: Path, name: str, folder: Path | None = None, *, replace: bool = False) -> Path:
    """Move a staged entry into place as ``<folder>/<name>``, replacing an older one whole if ``replace``; else
    an entry that appeared meanwhile (another import of the same name) is kept and EntryError says so: the
    rename onto a folder that holds files fails, so two imports cannot both win."""
    folder = models_dir() if folder is None else Path(folder)
    dest = folder / name
    _readable(staged)
    old = None
    try:
        if not replace:
            os.rename(staged, dest)
            return dest
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".replaced-{name}-", dir=folder))
            os.rename(dest, old / name)
        os.rename(staged, dest)
    except OSError as e:
        if old is not None and not dest.exists():
            os.rename(old / name, dest)
        if not replace and dest.exists():
            raise EntryError(f"{dest} appeared while this import ran (another import of the same name?): it is "
                             f"kept; pass --replace to import over it") from None
        raise EntryError(f"cannot install {dest}: {e.strerror or e}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def _readable(staged: Path) -> None:
    """The permissions a plain mkdir and write would give (the staging folder is private while written), so a
    server running as another user can read the entry."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [staged, *staged.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
