"""The build pipeline: checkpoint -> wrappers -> ONNX + TorchScript -> parity -> Triton repository.

    >>> from ganexport.export.build import build
    >>> build("cyclegan")                       # doctest: +SKIP
    [('cyclegan_a2b', 1), ('cyclegan_a2b_torchscript', 1), ('cyclegan_b2a', 1), ...]

Everything is exported and verified in a temporary directory first; only
when every Triton model of the training model passes parity is anything
published, each model atomically. A failed build leaves the repository as
it was, with the previous versions serving.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from ganexport import catalog, released
from ganexport import repository, repository_config, repository_writer
from ganexport.export import fast_convs, onnx_export, parity, torchscript, wrappers
from ganexport.repository import MODEL_FILES, PARITY_FILE, RUNTIMES, sha256
from ganexport.training import checkpoint

Log = Callable[[str], None]
# What each runtime's file is, in the build's log lines.
EXPORTS = {"onnxruntime": f"ONNX (opset {onnx_export.DEFAULT_OPSET})", "torchscript": "TorchScript"}


# --------------------------------------------------------------------------- which checkpoint


class NoCheckpoint(checkpoint.CheckpointError):
    """Neither released weights nor a run: the message says how to get one (train, or build's flag)."""


def no_checkpoint_message(models: list[str]) -> str:
    """One line: which models have no checkpoint, where build looked, and the two ways out."""
    return (f"{released.missing_checkpoint(models, runs=checkpoint.RUNS_DIR)}; train one with "
            f"`ganexport train --model {models[0]}`, or build with --train-if-missing, which trains the quick "
            f"profile first")


def choose(model: str, given: str | Path | None = None, *, latest_run: bool = False) -> checkpoint.Choice | None:
    """``checkpoint.choose``'s rule, and for an imported model (``ganexport import``) its converted weights."""
    origin = catalog.get(model).origin
    if given is None and origin is not None:
        return checkpoint.Choice(Path(origin.weights), f"imported from {origin.source}, format {origin.format}")
    return checkpoint.choose(model, given, latest_run=latest_run)


def load_checkpoint(model: str, checkpoint_path: Path | None = None, *, latest_run: bool = False,
                    built_into: Path | None = None, train_if_missing: bool = False,
                    log: Log = print) -> tuple[Path, checkpoint.Checkpoint]:
    """The checkpoint build, export and verify work from, said in one line: the one the repository
    ``built_into`` was built from (``built_from``) unless a path or ``latest_run`` is asked for, else
    ``checkpoint.choose``'s, else, only when ``train_if_missing`` (build's --train-if-missing), a
    quick-profile run trained now: minutes of training must never start because weights were not found.
    Refuses a checkpoint of another model."""
    choice = None if checkpoint_path or latest_run or built_into is None else built_from(model, built_into)
    choice = choice or choose(model, checkpoint_path, latest_run=latest_run)
    if choice is None:
        if not train_if_missing:
            raise NoCheckpoint(no_checkpoint_message([model]))
        log(f"{model}: {released.missing_checkpoint(model, runs=checkpoint.RUNS_DIR)}: "
            f"training the quick profile first (--train-if-missing)")
        from ganexport.training.loop import TrainConfig, train

        run = train(TrainConfig(model=model, profile="quick", out=str(checkpoint.RUNS_DIR),
                                command=f"ganexport build --model {model} --train-if-missing"))
        choice = checkpoint.Choice(run / "checkpoint.safetensors", "trained now (quick profile)")
    ckpt = checkpoint.load(choice.path)
    if ckpt.meta["model"] != model:
        raise checkpoint.CheckpointError(f"{checkpoint.shown(choice.path)}: holds a {ckpt.meta['model']} model, "
                                         f"not {model}")
    trained = (f"; step {ckpt.meta.get('step')}, trained on {ckpt.meta.get('dataset')}"
               if ckpt.meta.get("step") is not None else "")
    log(f"{model}: checkpoint {checkpoint.shown(choice.path)} ({choice.why}{trained})")
    return choice.path, ckpt


def _relative_or_none(path: Path) -> str | None:
    """``path`` relative to the working directory, or None: a published file names no folder of this machine."""
    shown = checkpoint.shown(path)
    return None if Path(shown).is_absolute() else shown


def built_from(model: str, repo: Path) -> checkpoint.Choice | None:
    """The checkpoint the published ``model`` was built from, found by the SHA-256 its parity.json records
    (at the recorded path, the released weights or any run); None when nothing is published."""
    # build publishes every Triton model of ``model`` together, so the first one published says it for all
    published = (repository.latest(repo, sig.for_runtime(runtime).name)
                 for sig in catalog.get(model).signatures() for runtime in MODEL_FILES)
    source = next((repository.read_parity(d).get("source") for d in published
                   if d is not None and (d / PARITY_FILE).is_file()), None)
    if source is None:
        return None
    candidates = [Path(source["checkpoint_path"])] if source.get("checkpoint_path") else []
    origin = catalog.get(model).origin
    candidates += [Path(origin.weights)] if origin is not None else []
    candidates += [released.weights_dir() / f"{model}.safetensors",
                   *sorted(checkpoint.RUNS_DIR.glob(f"{model}/*/checkpoint.safetensors"))]
    for path in candidates:
        if path.is_file() and sha256(path) == source.get("checkpoint_sha256"):
            return checkpoint.Choice(path, "the one this repository was built from")
    where = f" ({source['checkpoint_path']})" if source.get("checkpoint_path") else ""
    raise checkpoint.CheckpointError(
        f"{model}: the checkpoint this repository was built from{where}, step {source.get('step')}, is gone or has "
        f"changed since (a --resume rewrites a run's checkpoint); pass --checkpoint to verify against another")


# --------------------------------------------------------------------------- export one signature


@dataclass
class Exported:
    """The verified files of one Triton model signature, in a temporary directory."""

    sig: catalog.Signature
    files: dict[str, Path]  # runtime -> model file
    report: dict[str, Any]


def example_inputs(sig: catalog.Signature) -> tuple[torch.Tensor, ...]:
    """Tracing inputs of the exported file's signature (``wrappers.exported_signature``): batch 2 and, for
    translators, an odd non-square size, so nothing looks static."""
    case = parity.parity_inputs(sig)[0]
    if sig.kind == "translate":
        c = sig.inputs[0].shape[-1]
        return (torch.randint(0, 256, (2, 37, 53, c), dtype=torch.uint8),)
    return tuple(torch.from_numpy(np.repeat(case[t.name], 2, axis=0)) for t in sig.inputs)


def export_signature(ckpt: checkpoint.Checkpoint, sig: catalog.Signature, workdir: Path,
                     log: Log = print, runtimes: tuple[str, ...] = RUNTIMES) -> Exported:
    """Wrap, export the formats of ``runtimes``, reload, and check parity (raises ParityError/ExportError).

    The files compute ``wrappers.exported_signature(sig)`` (a diffusion model's denoiser), while the
    Exported keeps ``sig``: what is published beside them (signature.json, config.pbtxt) and served.
    A runtime that cannot take the model (a module with data-dependent control flow, a Python side
    effect, an operator its exporter lacks) raises ExportError naming it, its reason, and the runtimes
    that did export, which ``runtimes`` can ask for alone.
    """
    wrapper = wrappers.for_checkpoint(ckpt, sig)
    file_sig = wrappers.exported_signature(sig)
    example = example_inputs(file_sig)
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"{sig.name}: exporting " + " and ".join(EXPORTS[r] for r in runtimes)
        + (f" of its denoiser ({', '.join(t.name for t in file_sig.inputs)} -> eps)" if file_sig is not sig else ""))
    files, failures, ts_module = {}, {}, None
    if "onnxruntime" in runtimes:
        onnx_path = workdir / MODEL_FILES["onnxruntime"]
        try:
            fast = fast_convs.for_onnx_cpu(wrapper)  # parity below compares it with ``wrapper`` itself
            onnx_export.export_onnx(fast, file_sig, example, onnx_path)
            scrub_onnx(onnx_path)  # before parity, so the files checked are the files published
            files["onnxruntime"] = onnx_path
        except onnx_export.ExportError as e:
            failures["onnxruntime"] = str(e).removeprefix(f"{sig.name}: ")
    if "torchscript" in runtimes:
        ts_path = workdir / MODEL_FILES["torchscript"]
        try:
            torchscript.export_torchscript(wrapper, file_sig, example, ts_path)
            scrub_torchscript(ts_path)
            ts_module = torchscript.load(ts_path)
            files["torchscript"] = ts_path
        except Exception as e:  # TorchScript's compiler and tracer raise many types; the user needs the reason
            failures["torchscript"] = f"TorchScript export failed: {onnx_export.reason(e)}"
    if failures:
        raise onnx_export.ExportError(_export_refusal(sig.name, failures, list(files)))
    report = parity.check_parity(sig, wrapper, files.get("onnxruntime"), ts_module,
                                 reference=wrappers.reference_sampler(wrapper))
    for backend, r in report["backends"].items():
        log(f"{sig.name}: parity {backend}: max abs {r['max_abs_error']:.2e}, uint8 levels "
            f"{r['max_uint8_levels']}{_sampler_levels(r)} -> {'pass' if r['passed'] else 'FAIL'}")
    parity.raise_on_failure(report)
    return Exported(sig, files, report)


def _export_refusal(name: str, failures: dict[str, str], exported: list[str]) -> str:
    """One line: each runtime that failed and why, and how to publish the ones that exported."""
    text = f"{name}: " + "; ".join(f"{runtime} cannot take it ({why})" for runtime, why in failures.items())
    if exported:
        text += (f"; {' and '.join(exported)} exported: build with --runtimes {','.join(exported)} to check "
                 f"and publish that alone")
    return text


def _sampler_levels(backend_report: dict[str, Any]) -> str:
    """' (sampler: 10 steps 0, 50 steps 1, 10 steps at eta 1: 0)': a diffusion model's image difference by walk."""
    sampler = backend_report.get("sampler")
    if not sampler:
        return ""
    named = {walk: f"{walk} steps" if walk.isdigit() else walk.replace(" eta", " steps at eta") + ":"
             for walk in sampler}
    return " (sampler: " + ", ".join(f"{named[walk]} {r['max_uint8_levels']}" for walk, r in sampler.items()) + ")"


# --------------------------------------------------------------------------- nothing of this machine in artifacts


def scrub_onnx(path: Path) -> None:
    """Drop the exporter's per-node stack traces from an ONNX file.

    torch.export records ``File "/abs/path/nets.py", line ...`` for every node:
    the home, checkout and venv paths of the machine that built it, which a
    published model must not carry (and which make builds differ by checkout).
    The graph and weights are untouched.
    """
    model = onnx.load(str(path))
    graphs = [model.graph]
    nodes = [n for f in model.functions for n in f.node]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            nodes.append(node)
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)
    for node in nodes:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
        node.doc_string = ""
    onnx.save(model, str(path))


def scrub_torchscript(path: Path) -> None:
    """Rewrite a TorchScript archive without its ``*.debug_pkl`` records.

    They map code to source ranges by absolute file name (checkout, venv);
    torch.jit.load runs the model without them (errors just lose line numbers).
    """
    tmp = path.with_name(path.name + ".scrub")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith(".debug_pkl"):
                dst.writestr(info, src.read(info))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- build = export + publish


def build(model: str, *, checkpoint_path: Path | None = None, latest_run: bool = False,
          repo: Path = Path("model_repository"),
          flavor: str = "embedded", runtimes: tuple[str, ...] = ("onnxruntime", "torchscript"),
          gpu: bool = False, tensorrt: bool = False, keep: int = 3, train_if_missing: bool = False,
          log: Log = print) -> list[tuple[str, int]]:
    """Export, verify and publish every Triton model of ``model``; returns (name, version) pairs.

    ``tensorrt`` adds the TensorRT accelerator to the ONNX models' configs (native flavour on GPU only;
    the TorchScript models never get it). ``train_if_missing`` trains the quick profile when there is
    no checkpoint at all; without it that raises ``NoCheckpoint``. A model that ``flavor`` cannot
    serve (a diffusion model in the native flavour) is refused before anything is loaded or exported.
    """
    refuse_flavor(model, flavor)
    path, ckpt = load_checkpoint(model, checkpoint_path, latest_run=latest_run, train_if_missing=train_if_missing,
                                 log=log)
    source = {"checkpoint": path.name, "checkpoint_path": _relative_or_none(path), "checkpoint_sha256": sha256(path),
              "command": repository.public_command(ckpt.meta.get("command")), "model": model,
              "step": ckpt.meta.get("step"), "dataset": ckpt.meta.get("dataset"),
              **({"imported": ckpt.meta["imported"]} if ckpt.meta.get("imported") else {})}
    with tempfile.TemporaryDirectory(prefix="ganexport-build-") as tmp:
        exported = [export_signature(ckpt, sig, Path(tmp) / sig.name, log, runtimes)
                    for sig in ckpt.spec.signatures(ckpt.image_shape, ckpt.hp)]
        # Every signature passed: only now touch the repository, with every Triton model of ``model`` at once.
        entries, names = [], []
        for ex in exported:
            for runtime in runtimes:
                sig = ex.sig.for_runtime(runtime)  # the published name; config and publish take the base
                model_file = ex.files[runtime]
                report = {**ex.report, "model": sig.name, "runtime": runtime, "source": source,
                          "files": {MODEL_FILES[runtime]: sha256(model_file)}}
                report_path = Path(tmp) / f"{sig.name}.parity.json"
                report_path.write_text(json.dumps(report, indent=2))
                files = {MODEL_FILES[runtime]: model_file, PARITY_FILE: report_path}
                config = repository_config.config_pbtxt(ex.sig, flavor=flavor, runtime=runtime, gpu=gpu,
                                                        tensorrt=tensorrt and runtime == "onnxruntime")
                entries.append((ex.sig, files, config))
                names.append(sig.name)
        try:
            new_versions = repository_writer.publish_together(repo, entries, keep=keep)
        except OSError as e:  # a full disk, a read-only folder: one line naming the repository
            what = f" (writing {Path(e.filename).name})" if e.filename else ""
            raise repository_writer.PublishError(f"cannot write into {repo}: {e.strerror or e}{what}; "
                                                 f"every model is as it was") from None
    for name, version in zip(names, new_versions):
        log(f"{name}: published version {version} in {repo}/{name}/")
    for note in stale_twins(repo, [ex.sig for ex in exported], runtimes, source["checkpoint_sha256"]):
        log(f"note: {note}")
    return list(zip(names, new_versions))


def stale_twins(repo: Path, sigs: list, runtimes: tuple[str, ...], checkpoint_sha256: str) -> list[str]:
    """One line per published twin of another runtime than ``runtimes`` that was built from another checkpoint:
    after `import --replace` or a new training, a build of one runtime leaves its twin serving the old weights."""
    notes = []
    for sig in sigs:
        for runtime in (r for r in RUNTIMES if r not in runtimes):
            twin = sig.for_runtime(runtime).name
            version = repository.latest(repo, twin)
            built_from = (repository.read_parity(version).get("source") or {}) if version else {}
            if version and built_from.get("checkpoint_sha256") != checkpoint_sha256:
                notes.append(f"{twin} (version {version.name}) was built from another checkpoint and still serves "
                             f"it (this build was for {', '.join(runtimes)} alone)")
    return notes


def refuse_flavor(model: str, flavor: str) -> None:
    """PublishError (one line) when ``model`` publishes a Triton model that ``flavor`` has no form for."""
    for sig in catalog.get(model).signatures():
        refusal = repository_config.flavor_refusal(sig, flavor)
        if refusal:
            raise repository_writer.PublishError(refusal)


def export_files(model: str, out: Path, *, checkpoint_path: Path | None = None, latest_run: bool = False,
                 runtimes: tuple[str, ...] = RUNTIMES, log: Log = print) -> list[Path]:
    """ONNX + TorchScript (those of ``runtimes``) + parity.json per signature under ``out/<name>/``, without
    publishing."""
    _, ckpt = load_checkpoint(model, checkpoint_path, latest_run=latest_run, log=log)
    written = []
    with tempfile.TemporaryDirectory(prefix="ganexport-export-") as tmp:
        for sig in ckpt.spec.signatures(ckpt.image_shape, ckpt.hp):
            ex = export_signature(ckpt, sig, Path(tmp) / sig.name, log, runtimes)
            dest = Path(out) / sig.name
            dest.mkdir(parents=True, exist_ok=True)
            for runtime, f in ex.files.items():
                shutil.copy2(f, dest / MODEL_FILES[runtime])
            (dest / PARITY_FILE).write_text(json.dumps(ex.report, indent=2))
            written.append(dest)
    return written


# --------------------------------------------------------------------------- verify what is published


class VerifyError(Exception):
    """A published model no longer matches its checkpoint; the message names model and error."""


def verify(model: str, *, checkpoint_path: Path | None = None, latest_run: bool = False,
           repo: Path = Path("model_repository"), log: Log = print) -> list[str]:
    """Re-check the newest published version of each Triton model of ``model`` against the checkpoint:
    the one given, else the one the repository was built from, else ``checkpoint.choose``'s.

    Checks every published file against its version's SHA256SUMS (names a file changed on
    disk), then holds the published file to the build's parity gates on the parity inputs:
    its uint8 images and the float they round against the eager model (names the error
    size); a diffusion model's denoiser is compared as the build did, alone and through
    the sampler.
    """
    _, ckpt = load_checkpoint(model, checkpoint_path, latest_run=latest_run, built_into=repo, log=log)
    problems, checked = [], []
    for base in ckpt.spec.signatures(ckpt.image_shape, ckpt.hp):
        wrapper = wrappers.for_checkpoint(ckpt, base)
        for runtime, filename in MODEL_FILES.items():
            sig = base.for_runtime(runtime)
            version_dir = repository.latest(repo, sig.name)
            if version_dir is None:
                continue
            checked.append(sig.name)
            found = _verify_version(sig, runtime, version_dir / filename, wrapper)
            said = [p.removeprefix(f"{sig.name}: ") for p in found]
            log(f"{sig.name}: version {version_dir.name}: " + ("; ".join(said) if said else "ok"))
            problems += found
    if not checked:
        raise VerifyError(f"{model}: nothing published in {repo}; run ganexport build --model {model}")
    if problems:
        raise VerifyError("; ".join(problems))
    return checked


def _verify_version(sig: catalog.Signature, runtime: str, model_file: Path, wrapper: torch.nn.Module) -> list[str]:
    if not model_file.is_file():
        return [f"{sig.name}: {model_file.name} is missing"]
    problems = [f"{sig.name}: {p}" for p in repository.integrity_problems(model_file.parent)]
    try:
        loaded = _load(sig, runtime, model_file)
    except Exception as e:  # a corrupt file fails to load in many ways
        return problems + [f"{sig.name}: {model_file.name} does not load: {str(e).splitlines()[0][:200]}"]
    if sig.diffusion is not None:
        return problems + _verify_diffusion(sig, runtime, loaded, wrapper)
    try:
        report = _under_the_build_gates(sig, runtime, model_file, loaded, wrapper)
    except Exception as e:
        return problems + [f"{sig.name}: {model_file.name} fails to run: {str(e).splitlines()[0][:200]}"]
    if not report["passed"]:
        problems.append(f"{sig.name}: published {runtime} output differs from PyTorch: "
                        f"{report['backends'][runtime]['failures'][0]}")
    return problems


def _under_the_build_gates(sig: catalog.Signature, runtime: str, model_file: Path, loaded,
                           wrapper: torch.nn.Module) -> dict[str, Any]:
    """The build's parity report for one published file: the float gate too, where the file holds its float
    (TorchScript's ``float_forward``; the ONNX graph's value named ``wrappers.FLOAT_OUTPUT``), which tells a
    file apart from a checkpoint a fraction of a uint8 level away; an older ONNX file is held to its images."""
    if runtime == "torchscript":
        return parity.check_parity(sig, wrapper, None, loaded)
    # check_parity opens its own sessions of the ONNX file: the one loaded showed only that it loads
    return parity.check_parity(sig, wrapper, model_file, None, onnx_float=onnx_export.holds_float(model_file))


def _verify_diffusion(sig: catalog.Signature, runtime: str, run: parity.Run, denoiser: torch.nn.Module) -> list[str]:
    """The published denoiser against the PyTorch one under the build's gates: every denoiser case, then the
    sampler's shortest walk on a few rows (a changed file shows in the denoiser first; the build's longer
    walks measured the loop itself, which verify does not need to repeat)."""
    walk = ((min(parity.SAMPLER_STEPS), parity.SAMPLER_ROWS, 0.0),)
    try:
        comparisons, _, _ = parity.compare_diffusion(sig, denoiser, {runtime: run}, walks=walk)
    except Exception as e:
        return [f"{sig.name}: the published denoiser fails to run: {str(e).splitlines()[0][:200]}"]
    c = comparisons[runtime]
    if not c.failures:
        return []
    return [f"{sig.name}: published {runtime} denoiser differs from PyTorch (max abs {c.max_abs:.2e}, sampler "
            f"{c.max_levels} levels): {c.failures[0]}"]


def _load(sig: catalog.Signature, runtime: str, model_file: Path):
    """The published file loaded as verify runs it: a TorchScript module, an ONNX Runtime session, or for a
    diffusion model a ``parity.Run`` of its denoiser."""
    if sig.diffusion is not None:
        den = sig.denoiser()
        return (parity.onnx_run(model_file, den) if runtime == "onnxruntime"
                else parity.torch_run(torchscript.load(model_file), den))
    return parity.ort_session(model_file) if runtime == "onnxruntime" else torchscript.load(model_file)

