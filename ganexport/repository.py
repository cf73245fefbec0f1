"""The Triton model repository format, read side: names, versions, signature, checksums, checks, views.

Layout (Triton reads every subdirectory of the repository as one model, and
every version subdirectory of a model as one version)::

    model_repository/
      cyclegan_a2b/                    ONNX file, run by ONNX Runtime
        config.pbtxt                   CONFIG_FILE: names, dtypes, dims, batching
        3/                             a version: see version_number()
          model.onnx                   MODEL_FILES["onnxruntime"]: the exported graph (uint8 NHWC in and out)
          model.py                     PYTHON_MODEL_FILE, embedded flavour only: serving/triton_model.py
          signature.json               SIGNATURE_FILE: Signature.to_dict(); model.py validates requests with it
          parity.json                  PARITY_FILE: the export's parity report, when the build made one
          SHA256SUMS                   CHECKSUM_FILE: every file above with its sha256 (`sha256sum -c SHA256SUMS`)
      cyclegan_a2b_torchscript/        the same net as TorchScript: MODEL_FILES["torchscript"]
        ...
      ddpm/                            a diffusion model: model.onnx is its denoiser, model.py runs the sampler
        warmup/steps.raw               WARMUP_DIR: warm-up data of inputs whose range leaves out zero
        ...

export/ writes this format through ganexport.repository_writer; serving, the demo and the
benchmarks read it through this module, so a file name or the version rule exists once.
Only ganexport.catalog and the standard library are imported: no torch, no tritonclient.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from ganexport.catalog import RUNTIME_SUFFIX, Signature

RUNTIMES = tuple(RUNTIME_SUFFIX)
MODEL_FILES = {"onnxruntime": "model.onnx", "torchscript": "model.pt"}
CONFIG_FILE = "config.pbtxt"
SIGNATURE_FILE = "signature.json"
PARITY_FILE = "parity.json"
PYTHON_MODEL_FILE = "model.py"
CHECKSUM_FILE = "SHA256SUMS"
WARMUP_DIR = "warmup"  # Triton reads a config's model_warmup input_data_file from <model>/warmup/
VIEW_PREFIX = "ganexport-triton-view-"  # temp dirs of make_view(): <prefix><pid>-<random>

_VERSION = re.compile(r"[1-9][0-9]*")


class RepositoryError(RuntimeError):
    """The repository cannot be served as it is; the message is one line for the user and names the repository."""


# --------------------------------------------------------------------------- versions


def version_number(name: str) -> int | None:
    """The version a directory name stands for, or None when it is not a version dir.

    The one rule: a positive integer in ASCII digits without a leading zero. It is what
    ``publish`` writes and what every Triton release loads (Triton skips zero-prefixed
    names); ``str.isdigit()`` would also take "²" or Arabic-Indic digits, which Triton does not.
    """
    return int(name) if _VERSION.fullmatch(name) else None


def versions(repo: Path, name: str) -> list[int]:
    """Published versions of model ``name``, ascending."""
    model_dir = Path(repo) / name
    if not model_dir.is_dir():
        return []
    return sorted(v for p in model_dir.iterdir() if p.is_dir() and (v := version_number(p.name)) is not None)


def latest(repo: Path, name: str) -> Path | None:
    """The newest version dir of ``name`` (the one served: configs keep ``latest 1``), or None."""
    found = versions(repo, name)
    return Path(repo) / name / str(found[-1]) if found else None


# --------------------------------------------------------------------------- files of a version


def read_signature(version_dir: Path) -> Signature:
    """The Signature a version was published with (signature.json)."""
    return Signature.from_dict(json.loads((Path(version_dir) / SIGNATURE_FILE).read_text()))


def write_signature(version_dir: Path, sig: Signature) -> None:
    (Path(version_dir) / SIGNATURE_FILE).write_text(json.dumps(sig.to_dict(), indent=2) + "\n")


def read_parity(version_dir: Path) -> dict:
    """The version's parity report; {} when it has none, RepositoryError when it is unreadable."""
    path = Path(version_dir) / PARITY_FILE
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RepositoryError(f"{path} is unreadable: {e}") from None
    return report if isinstance(report, dict) else {}


# --------------------------------------------------------------------------- the published training record


HIDDEN_PATH = "…"
SHELL_OPERATORS = ("&&", ";", "||")


def _path_like(token: str) -> bool:
    return "/" in token or "\\" in token or token.startswith("~") or token in (".", "..")


def public_command(command: str | None) -> str:
    """The training command as the page shows it: the program by its base name, and every path of the
    training machine (``--data /home/me/photos``, ``--out runs/x``) as an ellipsis. The build publishes
    it so (a published file names no folder of the machine it was built on), and the demo applies it
    again to what older builds published."""
    if not command:
        return ""
    try:
        tokens = shlex.split(command)
    except ValueError:  # an unbalanced quote: still show the words
        tokens = command.split()
    shown, program = [], True
    for token in tokens:
        if token in SHELL_OPERATORS:  # a recipe of several commands: each starts with its program
            shown.append(token)
            program = True
            continue
        if program:
            program = False
            shown.append(PurePosixPath(token.replace("\\", "/")).name or token)
            continue
        flag, eq, value = token.partition("=") if token.startswith("-") else ("", "", token)
        if _path_like(value):
            token = f"{flag}{eq}{HIDDEN_PATH}"
        shown.append(token)
    return " ".join(t if t.endswith(HIDDEN_PATH) or t in SHELL_OPERATORS else shlex.quote(t) for t in shown)


def sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks: what SHA256SUMS and parity.json record."""
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


# --------------------------------------------------------------------------- checks before serving


def check_repository(repo: Path) -> list[str]:
    """The model names Triton will load from ``repo``; RepositoryError when there is nothing to serve.

    Triton treats every subdirectory as a model (hidden ones included) and, with
    auto-complete off, fails on one without config.pbtxt or without a version
    dir: say so before starting rather than after.
    """
    repo = Path(repo)
    if not repo.exists():
        raise RepositoryError(f"model repository {repo} does not exist; run `ganexport build` first")
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo} is not a directory")
    dirs = sorted(p for p in repo.iterdir() if p.is_dir())
    models = [p for p in dirs if (p / CONFIG_FILE).is_file()]
    if not models:
        raise RepositoryError(f"model repository {repo} holds no model (no <name>/{CONFIG_FILE}); "
                              "run `ganexport build` first")
    stray = [p.name for p in dirs if p not in models]
    if stray:
        raise RepositoryError(f"model repository {repo}: {', '.join(stray)} has no {CONFIG_FILE} "
                              "(Triton loads every subdirectory as a model)")
    empty = [p.name for p in models if not versions(repo, p.name)]
    if empty:
        raise RepositoryError(f"model repository {repo}: {', '.join(empty)} has no version directory "
                              "(a positive integer such as 1)")
    return [p.name for p in models]


def select_models(repo: Path, models: Iterable[str] | None = None) -> list[str]:
    """``models`` once each, checked to be in ``repo`` (all of its models when None)."""
    available = check_repository(repo)
    if models is None:
        return available
    chosen = list(dict.fromkeys(models))
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise RepositoryError(f"no model {', '.join(unknown)} in {repo}; available: {', '.join(available)}")
    if not chosen:
        raise RepositoryError(f"no model chosen from {repo}; available: {', '.join(available)}")
    return chosen


def default_models(repo: Path, torchscript: bool = False) -> list[str]:
    """What `serve` and the demo load by default: every model, less the _torchscript twins unless asked.

    Each TorchScript stub imports torch (about 250 MB and seconds per model), so the twins are opt-in.
    """
    suffix = RUNTIME_SUFFIX["torchscript"]
    return [n for n in check_repository(repo) if torchscript or not n.endswith(suffix)]


def check_integrity(repo: Path, names: Iterable[str] | None = None) -> None:
    """RepositoryError when a file Triton would serve differs from the sha256 recorded when it was published.

    Triton loads a model.onnx with a flipped weight byte without a word and
    serves wrong images, so the newest version of each model (the one served)
    is checked with ``integrity_problems`` first.
    """
    repo = Path(repo)
    problems: list[tuple[str, str]] = []  # (what is wrong, training model to rebuild)
    for name in check_repository(repo) if names is None else names:
        version_dir = latest(repo, name)
        if version_dir is None:
            continue
        try:
            source = read_parity(version_dir).get("source", {}).get("model") or name
        except (RepositoryError, AttributeError):
            source = name
        problems += [(f"model '{name}' version {version_dir.name}: {p}", source)
                     for p in integrity_problems(version_dir)]
    if problems:
        (what, model), more = problems[0], f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RepositoryError(f"refusing to serve a corrupt model: {what}{more}; `ganexport verify --model {model}` "
                              f"shows the damage, `ganexport build --model {model}` publishes a good version")


# --------------------------------------------------------------------------- the view Triton runs on


def make_view(repo: Path, models: Iterable[str] | None = None, *, configs: Mapping[str, str] | None = None) -> Path:
    """A temporary repository of ``models`` (all when None): real directories, each file a symlink to the published one.

    Triton runs on a view, never on ``repo`` itself: it then loads exactly the
    models asked for (it loads every subdirectory); each Python stub compiles
    model.py and writes ``__pycache__/`` beside it (the stub's interpreter is
    isolated, so PYTHONDONTWRITEBYTECODE is ignored), which in the view lands in
    the temp dir, so serving never changes a published repository; and
    ``configs`` (model name -> config.pbtxt text) can replace a published config
    in the view only, as benchmark variants do. The caller removes the view;
    views whose process died before it could are removed by the next call.
    """
    repo = Path(repo)
    chosen = select_models(repo, models)
    configs = dict(configs or {})
    if set(configs) - set(chosen):
        raise ValueError(f"configs for models not in the view: {', '.join(sorted(set(configs) - set(chosen)))}")
    sweep_stale(Path(tempfile.gettempdir()), VIEW_PREFIX)
    view = Path(tempfile.mkdtemp(prefix=f"{VIEW_PREFIX}{os.getpid()}-"))
    try:
        for name in chosen:
            source = repo / name
            for top, dirs, files in os.walk(source, followlinks=True):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                here = view / name / Path(top).relative_to(source)
                here.mkdir(parents=True, exist_ok=True)
                for filename in files:
                    (here / filename).symlink_to((Path(top) / filename).resolve())
            if name in configs:
                (view / name / CONFIG_FILE).unlink()
                (view / name / CONFIG_FILE).write_text(configs[name])
    except BaseException:
        shutil.rmtree(view, ignore_errors=True)
        raise
    return view


def sweep_stale(parent: Path, prefix: str) -> None:
    """Remove ``parent/<prefix><pid>-*`` dirs whose process no longer runs (it was killed before its cleanup)."""
    for path in Path(parent).glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isascii() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
