"""Publishing into the Triton model repository: a new version appears whole or not at all.

``publish`` stages everything in a hidden directory beside the repository (not
inside it: Triton does not skip hidden subdirectories, it would try to load the
staging dir as a model), then moves it in with one ``os.rename`` per directory
and ``os.replace`` for the config (and the warm-up data files it names). File names,
the version rule, signature.json and SHA256SUMS come from ganexport.repository; the config text from
ganexport.repository_config. No torch, no tritonclient at import time (the
config is parsed with Triton's schema only when tritonclient is installed).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Mapping

from ganexport.catalog import Signature
from ganexport.repository import (
    CHECKSUM_FILE, CONFIG_FILE, MODEL_FILES, PYTHON_MODEL_FILE, RUNTIMES, SIGNATURE_FILE, WARMUP_DIR, sweep_stale,
    versions, write_checksums, write_signature,
)
from ganexport.repository_config import NATIVE_PLATFORMS, model_name, warmup_files


class PublishError(RuntimeError):
    """publish() refused or failed; the repository is as it was before the call."""


def python_model_source() -> Path:
    """serving/triton_model.py, found through the installed package (editable or not)."""
    spec = importlib.util.find_spec("ganexport.serving.triton_model")
    if spec is None or spec.origin is None:
        raise PublishError("ganexport.serving.triton_model is not installed")
    return Path(spec.origin)


def publish(repo: Path, sig: Signature, files: dict[str, Path], *, config: str, keep: int = 3) -> int:
    """Publish ``files`` + ``config`` as the next version of the model ``config`` names; return it.

    ``files`` maps a file name inside the version dir (``model.onnx``,
    ``parity.json``...) to its source. signature.json is written from ``sig``,
    and model.py is added when the config uses the Python backend. Whatever
    fails, the repository is left as it was and the staging dir is removed;
    versions beyond the newest ``keep`` are pruned only after success.
    """
    return publish_together(repo, [(sig, files, config)], keep=keep)[0]


def publish_together(repo: Path, entries: list[tuple[Signature, dict[str, Path], str]], *,
                     keep: int = 3) -> list[int]:
    """Publish several models as one step (a model's ONNX and TorchScript twins, both directions of a
    translator): every one is staged before any is installed, so a full disk, a read-only folder or any
    other staging failure leaves all of them at the versions they had. Returns each one's new version."""
    repo = Path(repo)
    names = [_config_name(config) for _, _, config in entries]
    for (sig, files, config), name in zip(entries, names):
        _check_publish_args(sig, name, files, config, keep)
    created = _make_dirs(repo)
    try:
        with contextlib.ExitStack() as stack:
            stagings = []
            for sig, files, config in entries:
                stagings.append(stack.enter_context(_staging_dir(repo)))
                _stage(stagings[-1], sig, files, config)
            published = [_install(repo, name, staging) for name, staging in zip(names, stagings)]
    except BaseException:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    for name in names:
        _prune(repo, name, keep)
    return published


def _config_name(config: str) -> str:
    match = re.search(r'^name:\s*"([^"]+)"', config, re.MULTILINE)
    if not match:
        raise PublishError("config has no top-level name: \"...\" line")
    return match.group(1)


def _required_model_file(config: str) -> str:
    """The file Triton (or model.py) will load, as the config says."""
    for runtime, platform in NATIVE_PLATFORMS.items():
        if f'platform: "{platform}"' in config:
            return MODEL_FILES[runtime]
    match = re.search(r'key: "model_file" value: \{ string_value: "([^"]+)" \}', config)
    if not match:
        raise PublishError("config names no platform and no model_file parameter")
    return match.group(1)


def _uses_python_backend(config: str) -> bool:
    return re.search(r'^backend:\s*"python"', config, re.MULTILINE) is not None


def _check_publish_args(sig: Signature, name: str, files: Mapping[str, Path], config: str, keep: int) -> None:
    """Refuse before touching anything: a bad call must not even create the staging dir."""
    if name not in {model_name(sig, r) for r in RUNTIMES}:
        raise PublishError(f"config is for model {name!r}, not a Triton model of signature {sig.name!r}")
    if keep < 1:
        raise PublishError(f"keep must be >= 1, got {keep}")
    reserved = {SIGNATURE_FILE, CONFIG_FILE, CHECKSUM_FILE}
    for fname in files:
        if Path(fname).name != fname or fname in ("", ".", "..") or fname in reserved:
            raise PublishError(f"invalid file name {fname!r} for a version dir")
    needed = _required_model_file(config)
    if needed not in files:
        raise PublishError(f"{name}: the config loads {needed!r} but files has only {sorted(files)}")
    _warmup_data(sig, name, config)
    _check_config(config)


def _warmup_data(sig: Signature, name: str, config: str) -> dict[str, bytes]:
    """The warm-up data files the config reads (``input_data_file``), from the signature: Triton fails the
    model load when one is missing, so a config naming a file the signature does not make is refused."""
    wanted = re.findall(r'input_data_file:\s*"([^"]+)"', config)
    made = warmup_files(sig)
    unknown = sorted(set(wanted) - set(made))
    if unknown:
        raise PublishError(f"{name}: the config's warm-up reads {', '.join(unknown)}, which {sig.name}'s "
                           f"signature does not make")
    return {f: made[f] for f in wanted}


def _make_dirs(repo: Path) -> list[Path]:
    """Create the repository (and parents) if missing; return what was created, outermost first."""
    missing = [p for p in [repo, *repo.parents] if not p.exists()]
    repo.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


@contextlib.contextmanager
def _staging_dir(repo: Path) -> Iterator[Path]:
    """A hidden temp dir beside ``repo``: same filesystem (rename is atomic), not inside it."""
    sweep_stale(repo.parent, _staging_prefix(repo))  # left by killed publishes
    if os.stat(repo).st_dev != os.stat(repo.parent).st_dev:
        raise PublishError(f"{repo} is a mount point: cannot stage beside it on the same filesystem")
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(repo) + f"{os.getpid()}-", dir=repo.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging_prefix(repo: Path) -> str:
    return f".{repo.name}.staging-"


def _stage(staging: Path, sig: Signature, files: Mapping[str, Path], config: str) -> None:
    """staging/model/config.pbtxt and staging/version/<files>: everything a version needs."""
    version_dir = staging / "version"
    version_dir.mkdir()
    for fname, src in files.items():
        shutil.copy2(src, version_dir / fname)
    write_signature(version_dir, sig)
    if _uses_python_backend(config) and PYTHON_MODEL_FILE not in files:
        shutil.copy2(python_model_source(), version_dir / PYTHON_MODEL_FILE)
    write_checksums(version_dir)
    (staging / "model").mkdir()
    (staging / "model" / CONFIG_FILE).write_text(config)
    warmup = _warmup_data(sig, _config_name(config), config)
    if warmup:
        (staging / "model" / WARMUP_DIR).mkdir()
        for fname, data in warmup.items():
            (staging / "model" / WARMUP_DIR / fname).write_bytes(data)


def _check_config(config: str) -> None:
    """Parse with Triton's ModelConfig schema when tritonclient is installed (the serve extra)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return
    try:
        text_format.Parse(config, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise PublishError(f"config.pbtxt does not parse as a Triton ModelConfig: {e}") from None


def _install(repo: Path, name: str, staging: Path, attempts: int = 5) -> int:
    """Move the staged version into place; retry if a concurrent publish took the number."""
    for _ in range(attempts):
        model_dir = repo / name
        version = (versions(repo, name) or [0])[-1] + 1
        try:
            if not model_dir.exists():
                os.rename(staging / "version", staging / "model" / str(version))
                os.rename(staging / "model", model_dir)  # a whole new model appears at once
            else:
                _install_version(model_dir, staging, version)
            return version
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            _unstage_back(staging, version)
    raise PublishError(f"{name}: could not claim a new version number after {attempts} attempts")


def _unstage_back(staging: Path, version: int) -> None:
    """After a lost race on a new model dir, put the version dir back where _install expects it."""
    moved = staging / "model" / str(version)
    if moved.exists():
        os.rename(moved, staging / "version")


def _install_version(model_dir: Path, staging: Path, version: int) -> None:
    """rename the version dir in, then the warm-up data, then replace the config; undo the rename if that
    fails. Warm-up files are derived from the signature alone, so one replaced before a failure holds the
    same bytes as the one it replaced unless the signature changed, and then only the new config reads it."""
    target = model_dir / str(version)
    os.rename(staging / "version", target)
    try:
        warmup = staging / "model" / WARMUP_DIR
        if warmup.is_dir():
            (model_dir / WARMUP_DIR).mkdir(exist_ok=True)
            for f in warmup.iterdir():
                os.replace(f, model_dir / WARMUP_DIR / f.name)
        os.replace(staging / "model" / CONFIG_FILE, model_dir / CONFIG_FILE)
    except BaseException:
        os.rename(target, staging / "version")
        raise


def _prune(repo: Path, name: str, keep: int) -> None:
    """Keep the newest ``keep`` versions; old ones leave the repository by rename first."""
    old = versions(repo, name)[:-keep]
    if not old:
        return
    try:
        with _staging_dir(repo) as trash:
            for v in old:
                os.rename(repo / name / str(v), trash / str(v))
    except OSError as e:
        warnings.warn(f"published, but pruning old versions of {name} failed: {e}", stacklevel=3)
