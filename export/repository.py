"""The Triton model repository writer: config.pbtxt from a Signature, and atomic publish.

Layout (Triton reads every subdirectory of the repository as one model, and
every numeric subdirectory of a model as one version)::

    model_repository/
      cyclegan_a2b/                    ONNX file, run by ONNX Runtime
        config.pbtxt                   written by config_pbtxt(): names, dtypes, dims, batching
        3/                             versions are integers; publish() adds max + 1
          model.onnx                   the exported graph (uint8 NHWC in and out)
          model.py                     embedded flavour only: a copy of serving/triton_model.py
          signature.json               Signature.to_dict(): model.py validates requests with it
          parity.json                  the export's parity report, when the build made one
          SHA256SUMS                   every file above with its sha256 (`sha256sum -c SHA256SUMS`)
        4/
          ...
      cyclegan_a2b_torchscript/        the same net as TorchScript
        config.pbtxt
        4/
          model.pt
          model.py
          signature.json
      cgan/
        ...

Two flavours are written from the same Signature:

- ``embedded`` (default): ``backend: "python"``; the generic model.py loads
  ``model.onnx`` through ONNX Runtime or ``model.pt`` through torch, chosen by
  the config's ``runtime`` and ``model_file`` parameters. This is what the
  tritonserver bundled in nvidia-pytriton can run (it has no native backends).
- ``native``: ``platform: "onnxruntime_onnx"`` (optionally with the TensorRT
  accelerator) or ``platform: "pytorch_libtorch"`` for NVIDIA's Triton
  containers. libtorch names tensors ``<name>__<index>``; ``libtorch_names``
  gives clients the mapping.

Publishing never exposes a half-written model: everything is staged in a
hidden directory beside the repository (not inside it: Triton does not skip
hidden subdirectories, it would try to load the staging dir as a model), then
moved in with one ``os.rename`` per directory and ``os.replace`` for the config.
This module imports neither torch nor tritonclient.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Mapping

from ganexport.catalog import RUNTIME_SUFFIX, Signature, TensorSpec

FLAVORS = ("embedded", "native")
RUNTIMES = tuple(RUNTIME_SUFFIX)
MODEL_FILES = {"onnxruntime": "model.onnx", "torchscript": "model.pt"}
NATIVE_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
CONFIG_FILE = "config.pbtxt"
SIGNATURE_FILE = "signature.json"
PARITY_FILE = "parity.json"
PYTHON_MODEL_FILE = "model.py"
CHECKSUM_FILE = "SHA256SUMS"

# Warm-up images use this side, clamped into the signature's [min, max] side.
WARMUP_SIDE = 64


class PublishError(RuntimeError):
    """publish() refused or failed; the repository is as it was before the call."""


# --------------------------------------------------------------------------- names


def model_name(sig: Signature, runtime: str = "onnxruntime") -> str:
    """Triton model name: ``<name>`` runs ONNX, ``<name>_torchscript`` runs TorchScript."""
    _check_choice("runtime", runtime, RUNTIMES)
    return sig.for_runtime(runtime).name


def libtorch_names(sig: Signature) -> dict[str, str]:
    """Signature tensor name -> the name a native ``pytorch_libtorch`` model uses.

    libtorch has no tensor names; Triton maps ``<name>__<index>`` to the
    forward() argument (inputs) or the returned tuple element (outputs) at that index.
    """
    names = {t.name: f"{t.name}__{i}" for i, t in enumerate(sig.inputs)}
    for i, t in enumerate(sig.outputs):
        if t.name in names:
            raise ValueError(f"{sig.name}: tensor {t.name!r} is both an input and an output; "
                             "libtorch names would be ambiguous")
        names[t.name] = f"{t.name}__{i}"
    return names


# --------------------------------------------------------------------------- config.pbtxt


def config_pbtxt(sig: Signature, *, flavor: str = "embedded", runtime: str = "onnxruntime",
                 gpu: bool = False, instances: int = 1, tensorrt: bool = False,
                 max_queue_delay_us: int = 0, dynamic_batching: bool = True,
                 ort_options: Mapping[str, object] | None = None) -> str:
    """The config.pbtxt text of one Triton model, derived entirely from ``sig``.

    The serving knobs default to what BENCHMARKS.md measured best on CPU: one
    instance (two gained nothing), dynamic batching with no queue delay (a busy
    instance still collects the requests that queue meanwhile, and a lone request
    is not held back: 1 ms of delay doubled dcgan's p50 at one client). ``ganexport
    bench --variant`` rewrites them to compare alternatives.
    ``ort_options`` (``serving.backends.session_options`` keywords) become
    ``ort_<knob>`` parameters that the embedded model.py reads.

    Raises ValueError for combinations Triton would reject or silently ignore:
    TensorRT exists only for native ONNX models on GPU instances.
    """
    _check_choice("flavor", flavor, FLAVORS)
    _check_choice("runtime", runtime, RUNTIMES)
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    ort_options = {k: v for k, v in (ort_options or {}).items() if v is not None}
    if ort_options and (flavor, runtime) != ("embedded", "onnxruntime"):
        raise ValueError("ort_options apply only to flavor='embedded', runtime='onnxruntime'")
    if tensorrt and (flavor, runtime) != ("native", "onnxruntime"):
        raise ValueError("tensorrt applies only to flavor='native', runtime='onnxruntime'")
    if tensorrt and not gpu:
        raise ValueError("tensorrt needs gpu=True (TensorRT runs on GPU instances only)")
    rename = libtorch_names(sig) if (flavor, runtime) == ("native", "torchscript") else {}
    parts = [f'name: "{model_name(sig, runtime)}"']
    if flavor == "embedded":
        parts.append('backend: "python"')
    else:
        parts.append(f'platform: "{NATIVE_PLATFORMS[runtime]}"')
    parts.append(f"max_batch_size: {sig.max_batch_size}")
    parts.append("version_policy: { latest: { num_versions: 1 } }")
    parts.append(_tensors("input", sig.inputs, rename))
    parts.append(_tensors("output", sig.outputs, rename))
    if dynamic_batching:
        parts.append(_dynamic_batching(sig, max_queue_delay_us))
    parts.append(f"instance_group [\n  {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }}\n]")
    params = {"signature": json.dumps(sig.for_runtime(runtime).to_dict(), separators=(",", ":"))}
    if flavor == "embedded":
        params.update(runtime=runtime, model_file=MODEL_FILES[runtime])
        params.update({f"ort_{k}": str(v) for k, v in ort_options.items()})
    # The full signature (value ranges, size limits) rides along, so any Triton client can
    # validate a request before sending it: GET /v2/models/<name>/config.
    parts.append(_parameters(params))
    if tensorrt:
        parts.append(_tensorrt_block())
    warmup = _warmup(sig, rename)
    if warmup:
        parts.append(warmup)
    return "\n".join(parts) + "\n"


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _dims(shape: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _tensors(kind: str, specs: tuple[TensorSpec, ...], rename: Mapping[str, str]) -> str:
    """``input [ ... ]`` / ``output [ ... ]``; dims exclude the batch dim (max_batch_size > 0)."""
    items = [
        f'  {{\n    name: "{rename.get(t.name, t.name)}"\n    data_type: TYPE_{t.dtype}\n'
        f"    dims: {_dims(t.shape)}\n  }}"
        for t in specs
    ]
    return f"{kind} [\n" + ",\n".join(items) + "\n]"


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 4 up to the maximum, and the maximum: sizes the runtimes like."""
    sizes = [n for n in (2 ** k for k in range(2, 16)) if n < max_batch_size]
    return sizes + [max_batch_size]


def _dynamic_batching(sig: Signature, max_queue_delay_us: int) -> str:
    sizes = ", ".join(str(n) for n in preferred_batch_sizes(sig.max_batch_size))
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")


def _parameters(params: Mapping[str, str]) -> str:
    """parameters entries; values are quoted and escaped as JSON strings, which text format also reads."""
    return "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
                     for k, v in params.items())


def _tensorrt_block() -> str:
    return ("optimization { execution_accelerators {\n"
            '  gpu_execution_accelerator : [ {\n    name : "tensorrt"\n'
            '    parameters { key: "precision_mode" value: "FP16" }\n  } ]\n} }')


def warmup_shape(sig: Signature, spec: TensorSpec) -> tuple[int, ...]:
    """Concrete dims for a warm-up request: dynamic sides become WARMUP_SIDE within the limits."""
    side = WARMUP_SIDE
    if sig.min_image_side is not None:
        side = max(side, sig.min_image_side)
    if sig.max_image_side is not None:
        side = min(side, sig.max_image_side)
    return tuple(side if d == -1 else d for d in spec.shape)


def _warmup(sig: Signature, rename: Mapping[str, str]) -> str:
    """One zero-filled batch-1 request so the first real request does not pay for loading.

    zero_data, not random_data: random INT64 labels fall outside the label range
    and fail validation, which fails the model load. Where zero itself is out of
    an input's range there is no warm-up at all.
    """
    if any((t.low is not None and t.low > 0) or (t.high is not None and t.high < 0) for t in sig.inputs):
        return ""
    inputs = "\n".join(
        f'    inputs {{ key: "{rename.get(t.name, t.name)}" value: {{ data_type: TYPE_{t.dtype} '
        f"dims: {_dims(warmup_shape(sig, t))} zero_data: true }} }}"
        for t in sig.inputs
    )
    return f'model_warmup [\n  {{\n    name: "zeros_batch1"\n    batch_size: 1\n{inputs}\n  }}\n]'


# --------------------------------------------------------------------------- reading the repository


def versions(repo: Path, name: str) -> list[int]:
    """Published versions of ``name``, ascending; only numeric dirs count, as in Triton."""
    model_dir = Path(repo) / name
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isascii() and p.name.isdigit())


def sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks: what parity.json records for every published model file,
    so `verify` and the start-up check of `serve` / `demo` compare against the same thing."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(version_dir: Path) -> None:
    """SHA256SUMS over every file of a version, in ``sha256sum`` format, so a user can check it by hand."""
    names = sorted(p.name for p in Path(version_dir).iterdir() if p.is_file() and p.name != CHECKSUM_FILE)
    (Path(version_dir) / CHECKSUM_FILE).write_text("".join(f"{sha256(Path(version_dir) / n)}  {n}\n" for n in names))


def integrity_problems(version_dir: Path) -> list[str]:
    """What in a published version differs from the hashes recorded when it was published; [] when intact.

    Every file counts, not only the model: model.py is code the Triton stub runs and signature.json
    sets the limits requests are validated against. Versions published before SHA256SUMS existed
    are checked against parity.json's model-file hash; versions with neither were not published by
    ganexport and are not checked. This catches corruption and stray edits, not an attacker who
    rewrites the sums too.
    """
    version_dir = Path(version_dir)
    sums, report = version_dir / CHECKSUM_FILE, version_dir / PARITY_FILE
    try:
        if sums.is_file():
            pairs = [line.split("  ", 1) for line in sums.read_text().splitlines()]  # "<digest>  <name>"
            recorded, source = {name: digest for digest, name in pairs}, CHECKSUM_FILE
        elif report.is_file():
            recorded, source = json.loads(report.read_text()).get("files", {}), PARITY_FILE
        else:
            return []
    except (OSError, ValueError):
        return [f"{(sums if sums.is_file() else report).name} is unreadable"]
    problems = []
    for filename, digest in recorded.items():
        path = version_dir / filename
        if Path(filename).name != filename or not path.is_file():
            problems.append(f"{filename} is missing")
        elif sha256(path) != digest:
            problems.append(f"{filename} changed since it was published (its sha256 differs from {source})")
    return problems


def latest(repo: Path, name: str) -> Path | None:
    """The newest version dir of ``name``, or None when nothing is published."""
    found = versions(repo, name)
    return Path(repo) / name / str(found[-1]) if found else None


def python_model_source() -> Path:
    """serving/triton_model.py, found through the installed package (editable or not)."""
    spec = importlib.util.find_spec("ganexport.serving.triton_model")
    if spec is None or spec.origin is None:
        raise PublishError("ganexport.serving.triton_model is not installed")
    return Path(spec.origin)


# --------------------------------------------------------------------------- publish


def publish(repo: Path, sig: Signature, files: dict[str, Path], *, config: str, keep: int = 3) -> int:
    """Publish ``files`` + ``config`` as the next version of the model ``config`` names; return it.

    ``files`` maps a file name inside the version dir (``model.onnx``,
    ``parity.json``...) to its source. signature.json is written from ``sig``,
    and model.py is added when the config uses the Python backend. Whatever
    fails, the repository is left as it was and the staging dir is removed;
    versions beyond the newest ``keep`` are pruned only after success.
    """
    repo = Path(repo)
    name = _config_name(config)
    _check_publish_args(sig, name, files, config, keep)
    created = _make_dirs(repo)
    try:
        with _staging_dir(repo) as staging:
            _stage(staging, sig, files, config)
            version = _install(repo, name, staging)
    except BaseException:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    _prune(repo, name, keep)
    return version


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
    _check_config(config)


def _make_dirs(repo: Path) -> list[Path]:
    """Create the repository (and parents) if missing; return what was created, outermost first."""
    missing = [p for p in [repo, *repo.parents] if not p.exists()]
    repo.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


@contextlib.contextmanager
def _staging_dir(repo: Path) -> Iterator[Path]:
    """A hidden temp dir beside ``repo``: same filesystem (rename is atomic), not inside it."""
    _sweep_stale_staging(repo)
    if os.stat(repo).st_dev != os.stat(repo.parent).st_dev:
        raise PublishError(f"{repo} is a mount point: cannot stage beside it on the same filesystem")
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(repo) + f"{os.getpid()}-", dir=repo.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging_prefix(repo: Path) -> str:
    return f".{repo.name}.staging-"


def _sweep_stale_staging(repo: Path) -> None:
    """Remove staging dirs left by killed publishes (their pid no longer runs)."""
    for p in repo.parent.glob(_staging_prefix(repo) + "*"):
        pid = p.name[len(_staging_prefix(repo)):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stage(staging: Path, sig: Signature, files: Mapping[str, Path], config: str) -> None:
    """staging/model/config.pbtxt and staging/version/<files>: everything a version needs."""
    version_dir = staging / "version"
    version_dir.mkdir()
    for fname, src in files.items():
        shutil.copy2(src, version_dir / fname)
    (version_dir / SIGNATURE_FILE).write_text(json.dumps(sig.to_dict(), indent=2) + "\n")
    if _uses_python_backend(config) and PYTHON_MODEL_FILE not in files:
        shutil.copy2(python_model_source(), version_dir / PYTHON_MODEL_FILE)
    write_checksums(version_dir)
    (staging / "model").mkdir()
    (staging / "model" / CONFIG_FILE).write_text(config)


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
    """rename the version dir in, then replace the config; undo the rename if that fails."""
    target = model_dir / str(version)
    os.rename(staging / "version", target)
    try:
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
