"""The repository format: config.pbtxt parses with Triton's schema; publish is atomic; one version rule.

Expectations are derived from catalog signatures, never copied from them.
The generic model.py (serving/triton_model.py) is tested against the real
server elsewhere; here it only has to parse and keep torch out of module level.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ganexport import catalog
from ganexport import repository as repo_mod
from ganexport.repository import (
    CHECKSUM_FILE, CONFIG_FILE, MODEL_FILES, PARITY_FILE, PYTHON_MODEL_FILE, RUNTIMES, SIGNATURE_FILE,
    RepositoryError, check_integrity, check_repository, latest, make_view, read_signature, version_number,
    versions,
)
from ganexport.repository_config import (
    FLAVORS, config_pbtxt, flavor_refusal, libtorch_names, model_name, warmup_file, warmup_files,
)
from ganexport.repository_writer import PublishError, publish, python_model_source
from ganexport.serving.validation import validate

SIGS = {name: sig for name, (_, sig) in catalog.triton_models().items()}
TRITON_MODEL = Path(python_model_source())
ONNX_FILE = MODEL_FILES["onnxruntime"]


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def dtype_name(dtype: str) -> str:
    return "TYPE_" + dtype


# --------------------------------------------------------------------------- config.pbtxt

COMBOS = list(itertools.product(sorted(SIGS), FLAVORS, RUNTIMES, (False, True), (False, True)))


def _valid_combo(flavor: str, runtime: str, gpu: bool, tensorrt: bool) -> bool:
    return not tensorrt or (flavor == "native" and runtime == "onnxruntime" and gpu)


@pytest.mark.parametrize("name,flavor,runtime,gpu,tensorrt", COMBOS)
def test_config_parses_and_matches_signature(name, flavor, runtime, gpu, tensorrt):
    sig = SIGS[name]
    if flavor_refusal(sig, flavor):  # a diffusion model in the native flavour: its loop needs the Python backend
        with pytest.raises(ValueError, match="embedded"):
            config_pbtxt(sig, flavor=flavor, runtime=runtime, gpu=gpu, tensorrt=tensorrt)
        return
    if not _valid_combo(flavor, runtime, gpu, tensorrt):
        with pytest.raises(ValueError, match="tensorrt"):
            config_pbtxt(sig, flavor=flavor, runtime=runtime, gpu=gpu, tensorrt=tensorrt)
        return
    cfg = parse(config_pbtxt(sig, flavor=flavor, runtime=runtime, gpu=gpu, tensorrt=tensorrt, instances=2))
    rename = libtorch_names(sig) if (flavor, runtime) == ("native", "torchscript") else {}

    assert cfg.name == model_name(sig, runtime)
    assert cfg.max_batch_size == sig.max_batch_size > 0
    for got, want in [(cfg.input, sig.inputs), (cfg.output, sig.outputs)]:
        assert [t.name for t in got] == [rename.get(t.name, t.name) for t in want]
        assert [model_config_pb2.DataType.Name(t.data_type) for t in got] == [dtype_name(t.dtype) for t in want]
        assert [tuple(t.dims) for t in got] == [t.shape for t in want]
    if flavor == "embedded":
        assert cfg.backend == "python" and not cfg.platform
        assert cfg.parameters["runtime"].string_value == runtime
        assert cfg.parameters["model_file"].string_value == MODEL_FILES[runtime]
    else:
        assert cfg.platform == {"onnxruntime": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}[runtime]
        assert not cfg.backend
    groups = cfg.instance_group
    assert len(groups) == 1 and groups[0].count == 2
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(groups[0].kind) == ("KIND_GPU" if gpu else "KIND_CPU")
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accel] == (["tensorrt"] if tensorrt else [])
    if tensorrt:
        assert accel[0].parameters["precision_mode"] == "FP16"


@pytest.mark.parametrize("name", sorted(SIGS))
def test_batching_version_policy_and_warmup(name):
    sig = SIGS[name]
    cfg = parse(config_pbtxt(sig, max_queue_delay_us=2500))
    batching = cfg.dynamic_batching
    assert batching.max_queue_delay_microseconds == 2500
    assert list(batching.preferred_batch_size) == sorted(set(batching.preferred_batch_size))
    assert batching.preferred_batch_size[-1] == sig.max_batch_size
    assert cfg.version_policy.latest.num_versions == 1
    (warmup,) = cfg.model_warmup
    assert warmup.batch_size == 1
    assert sorted(warmup.inputs) == sorted(t.name for t in sig.inputs)
    files = warmup_files(sig)
    for spec in sig.inputs:
        w = warmup.inputs[spec.name]
        assert not w.random_data
        assert (w.input_data_file == warmup_file(spec)) if warmup_file(spec) in files else w.zero_data
        assert model_config_pb2.DataType.Name(w.data_type) == dtype_name(spec.dtype)
        assert len(w.dims) == len(spec.shape) and all(d > 0 for d in w.dims)
        assert all(wd == sd for wd, sd in zip(w.dims, spec.shape) if sd != -1)


@pytest.mark.parametrize("name", sorted(SIGS))
def test_warmup_request_passes_validation(name):
    """Warm-up goes through model.py's validation: a refused warm-up fails the model load."""
    sig = SIGS[name]
    warmup = parse(config_pbtxt(sig)).model_warmup[0]
    files = warmup_files(sig)
    inputs = {}
    for spec in sig.inputs:
        w, shape = warmup.inputs[spec.name], (warmup.batch_size, *warmup.inputs[spec.name].dims)
        data = files[w.input_data_file] if w.input_data_file else bytes(int(np.prod(shape)) * 8)
        inputs[spec.name] = np.frombuffer(data, spec.numpy_dtype)[:int(np.prod(shape))].reshape(shape)
    validate(sig, inputs)


def test_a_diffusion_models_warmup_walks_one_step_from_a_file_beside_its_config(tmp_path):
    """Zero steps is not a request: the warm-up reads steps = 1 from <model>/warmup/, which publish writes."""
    sig = next(s for s in SIGS.values() if s.diffusion is not None)
    steps = next(t for t in sig.inputs if t.low is not None and t.low > 0)
    assert warmup_files(sig) == {warmup_file(steps): np.ones(1, steps.numpy_dtype).tobytes()}
    (tmp_path / ONNX_FILE).write_bytes(b"onnx")
    for version in (1, 2):  # a new model directory, then a new version beside the first
        assert publish(tmp_path / "repo", sig, {ONNX_FILE: tmp_path / ONNX_FILE}, config=config_pbtxt(sig)) == version
        assert (tmp_path / "repo" / sig.name / repo_mod.WARMUP_DIR / warmup_file(steps)).read_bytes() == \
            warmup_files(sig)[warmup_file(steps)]
    assert versions(tmp_path / "repo", sig.name) == [1, 2]
    assert check_repository(tmp_path / "repo") == [sig.name]
    with pytest.raises(PublishError, match="warm-up"):
        publish(tmp_path / "repo", sig, {ONNX_FILE: tmp_path / ONNX_FILE},
                config=config_pbtxt(sig).replace(warmup_file(steps), "other.raw"))


@pytest.mark.parametrize("name", sorted(n for n, s in SIGS.items() if not flavor_refusal(s, "native")))
def test_native_torchscript_warmup_uses_libtorch_names(name):
    sig = SIGS[name]
    cfg = parse(config_pbtxt(sig, flavor="native", runtime="torchscript"))
    names = libtorch_names(sig)
    assert sorted(cfg.model_warmup[0].inputs) == sorted(names[t.name] for t in sig.inputs)


@pytest.mark.parametrize("name", sorted(SIGS))
def test_libtorch_names_follow_the_index_convention(name):
    sig = SIGS[name]
    names = libtorch_names(sig)
    for group in (sig.inputs, sig.outputs):
        for i, t in enumerate(group):
            assert names[t.name] == f"{t.name}__{i}"
    assert len(set(names.values())) == len(names)


def test_config_refuses_unknown_choices():
    sig = next(iter(SIGS.values()))
    for kwargs in [dict(flavor="docker"), dict(runtime="tensorflow"), dict(instances=0)]:
        with pytest.raises(ValueError):
            config_pbtxt(sig, **kwargs)


def test_torchscript_models_get_their_own_name():
    sig = next(iter(SIGS.values()))
    assert model_name(sig, "onnxruntime") == sig.name
    assert model_name(sig, "torchscript") != sig.name


# --------------------------------------------------------------------------- publish

SIG = next(s for s in SIGS.values() if -1 in s.inputs[0].shape)  # a translator: the richest signature


def tree(root: Path) -> dict[str, str]:
    """Every path under root -> sha256 of its bytes ('dir' for directories)."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[str]:
    """Staging or trash dirs left beside the repository."""
    return [p.name for p in root.parent.iterdir() if p.name.startswith(".") and "staging" in p.name]


@pytest.fixture()
def env(tmp_path):
    """A repository path and source files: a model per runtime and a parity report."""
    src = tmp_path / "src"
    src.mkdir()
    for runtime, fname in MODEL_FILES.items():
        (src / fname).write_bytes(os.urandom(256) + runtime.encode())
    (src / PARITY_FILE).write_text(json.dumps({"passed": True}))
    root = tmp_path / "work"
    root.mkdir()
    return root / "model_repository", src


def files_for(src: Path, runtime: str = "onnxruntime") -> dict[str, Path]:
    fname = MODEL_FILES[runtime]
    return {fname: src / fname, PARITY_FILE: src / PARITY_FILE}


def test_publish_writes_the_documented_layout(env):
    repo, src = env
    config = config_pbtxt(SIG)
    v = publish(repo, SIG, files_for(src), config=config)
    assert v == 1 and versions(repo, SIG.name) == [1]
    vdir = latest(repo, SIG.name)
    assert vdir == repo / SIG.name / "1"
    assert (repo / SIG.name / CONFIG_FILE).read_text() == config
    assert (vdir / ONNX_FILE).read_bytes() == (src / ONNX_FILE).read_bytes()
    assert (vdir / PARITY_FILE).read_bytes() == (src / PARITY_FILE).read_bytes()
    assert (vdir / PYTHON_MODEL_FILE).read_bytes() == TRITON_MODEL.read_bytes()
    assert read_signature(vdir) == SIG
    assert leftovers(repo) == []


def test_published_version_carries_sha256sums_that_coreutils_accepts(env):
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    vdir = latest(repo, SIG.name)
    listed = [line.split("  ", 1)[1] for line in (vdir / CHECKSUM_FILE).read_text().splitlines()]
    assert sorted(listed) == sorted(p.name for p in vdir.iterdir() if p.name != CHECKSUM_FILE)
    assert {ONNX_FILE, PYTHON_MODEL_FILE, SIGNATURE_FILE, PARITY_FILE} <= set(listed)
    checked = subprocess.run(["sha256sum", "-c", CHECKSUM_FILE], cwd=vdir, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(listed), checked.stdout
    assert repo_mod.integrity_problems(vdir) == []


@pytest.mark.parametrize("victim", [PYTHON_MODEL_FILE, SIGNATURE_FILE, ONNX_FILE])
def test_integrity_problems_name_any_published_file_changed_or_removed(env, victim):
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    vdir = latest(repo, SIG.name)
    with open(vdir / victim, "ab") as f:
        f.write(b"\n")
    assert repo_mod.integrity_problems(vdir) == [
        f"{victim} changed since it was published (its sha256 differs from {CHECKSUM_FILE})"]
    (vdir / victim).unlink()
    assert repo_mod.integrity_problems(vdir) == [f"{victim} is missing"]
    (vdir / CHECKSUM_FILE).write_text("garbage without the two-space separator\n")
    assert repo_mod.integrity_problems(vdir) == [f"{CHECKSUM_FILE} is unreadable"]


@pytest.mark.parametrize("name", sorted(SIGS))
def test_signature_json_round_trips_for_every_model(env, name):
    repo, src = env
    sig = SIGS[name]
    publish(repo, sig, files_for(src, "torchscript"), config=config_pbtxt(sig, runtime="torchscript"))
    vdir = latest(repo, model_name(sig, "torchscript"))
    assert read_signature(vdir) == sig


def test_native_flavor_has_no_model_py(env):
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG, flavor="native"))
    assert not (latest(repo, SIG.name) / PYTHON_MODEL_FILE).exists()


def test_versions_increase_and_prune_to_keep(env):
    repo, src = env
    config = config_pbtxt(SIG)
    got = [publish(repo, SIG, files_for(src), config=config, keep=2) for _ in range(4)]
    assert got == [1, 2, 3, 4]
    assert versions(repo, SIG.name) == [3, 4]
    assert latest(repo, SIG.name) == repo / SIG.name / "4"
    assert leftovers(repo) == []


def test_versions_ignore_non_numeric_dirs(env):
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    (repo / SIG.name / "notes").mkdir()
    (repo / SIG.name / "10").mkdir()
    assert versions(repo, SIG.name) == [1, 10]
    assert publish(repo, SIG, files_for(src), config=config_pbtxt(SIG)) == 11
    assert versions(repo, "nothing_here") == [] and latest(repo, "nothing_here") is None


NOT_VERSIONS = ["0", "007", "²", "\u0663", "\u0661\u0660", "\uff11", "1a", " 1", "-1", "1.0", ""]  # ٣, ١٠, fullwidth 1


@pytest.mark.parametrize("name,number", [("1", 1), ("10", 10), ("907", 907)] + [(n, None) for n in NOT_VERSIONS])
def test_one_rule_says_what_a_version_dir_is(name, number):
    assert version_number(name) == number


def test_a_non_ascii_digit_dir_is_not_a_version_anywhere(env):
    """versions/latest, the next publish, the pre-start checks and the view all ignore what Triton ignores."""
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    good = latest(repo, SIG.name)
    for name in ("\u0663", "²", "007"):  # str.isdigit() says yes to the first two
        shutil.copytree(good, repo / SIG.name / name)
        with open(repo / SIG.name / name / ONNX_FILE, "ab") as f:
            f.write(b"tampered")  # were it taken for the newest version, the integrity check would refuse it
    assert versions(repo, SIG.name) == [1] and latest(repo, SIG.name) == good
    assert check_repository(repo) == [SIG.name]
    check_integrity(repo)
    assert publish(repo, SIG, files_for(src), config=config_pbtxt(SIG)) == 2
    only_odd = repo / "odd_model"
    only_odd.mkdir()
    (only_odd / CONFIG_FILE).write_text(config_pbtxt(SIG))
    shutil.copytree(good, only_odd / "\u0663")
    with pytest.raises(RepositoryError, match="odd_model has no version directory"):
        check_repository(repo)
    with pytest.raises(RepositoryError, match="odd_model has no version directory"):
        make_view(repo, [SIG.name])


# --------------------------------------------------------------------------- the view Triton runs on


def test_view_holds_only_the_chosen_models_as_symlinks_and_replaces_only_given_configs(env):
    repo, src = env
    other = next(s for s in SIGS.values() if s.name != SIG.name)
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    publish(repo, other, files_for(src), config=config_pbtxt(other))
    (latest(repo, SIG.name) / "__pycache__").mkdir()  # a stub's bytecode cache from an older serving
    before = tree(repo)
    view = make_view(repo, [SIG.name], configs={SIG.name: config_pbtxt(SIG, dynamic_batching=False)})
    try:
        assert view.name.startswith(f"{repo_mod.VIEW_PREFIX}{os.getpid()}-") and repo.resolve() not in view.parents
        assert sorted(p.name for p in view.iterdir()) == [SIG.name]
        vdir = view / SIG.name / "1"
        assert vdir.is_dir() and not vdir.is_symlink() and not (vdir / "__pycache__").exists()
        published = sorted(p.name for p in latest(repo, SIG.name).iterdir() if p.is_file())
        assert sorted(p.name for p in vdir.iterdir()) == published
        assert all((vdir / n).is_symlink() and (vdir / n).resolve() == (latest(repo, SIG.name) / n).resolve()
                   for n in published)
        config = view / SIG.name / CONFIG_FILE
        assert not config.is_symlink() and "dynamic_batching" not in config.read_text()
        assert read_signature(vdir) == SIG
    finally:
        shutil.rmtree(view)
    assert tree(repo) == before  # the published repository is untouched
    with pytest.raises(RepositoryError, match=rf"no model nope in {repo}; available: "):
        make_view(repo, ["nope"])


def test_a_view_left_by_a_killed_process_is_swept_by_the_next(env):
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"{repo_mod.VIEW_PREFIX}{dead.pid}-abc"
    (stale / SIG.name).mkdir(parents=True)
    view = make_view(repo)
    shutil.rmtree(view)
    assert not stale.exists()


def test_staging_happens_outside_the_repository(env, monkeypatch):
    """Triton loads every subdirectory, hidden ones too: nothing may be staged inside."""
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    seen = []
    real_copy = shutil.copy2

    def spy(s, d, *a, **k):
        seen.append(Path(d))
        return real_copy(s, d, *a, **k)

    monkeypatch.setattr(shutil, "copy2", spy)
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    assert seen and all(repo.resolve() not in p.resolve().parents for p in seen)
    assert all(p.resolve().parent.parent.parent == repo.parent.resolve() for p in seen)


# --------------------------------------------------------------------------- failures leave no trace


def _published_twice(repo: Path, src: Path) -> dict[str, str]:
    for _ in range(2):
        publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    return tree(repo)


def test_missing_second_file_leaves_repository_unchanged(env):
    repo, src = env
    before = _published_twice(repo, src)
    files = {ONNX_FILE: src / ONNX_FILE, PARITY_FILE: src / "missing.json"}
    with pytest.raises(FileNotFoundError):
        publish(repo, SIG, files, config=config_pbtxt(SIG))
    assert tree(repo) == before
    assert leftovers(repo) == []


def test_copy_failing_halfway_leaves_repository_unchanged(env, monkeypatch):
    repo, src = env
    before = _published_twice(repo, src)
    real_copy, calls = shutil.copy2, []

    def flaky(s, d, *a, **k):
        calls.append(d)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return real_copy(s, d, *a, **k)

    monkeypatch.setattr(shutil, "copy2", flaky)
    with pytest.raises(OSError, match="simulated"):
        publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    assert len(calls) == 2
    assert tree(repo) == before
    assert leftovers(repo) == []


def test_config_replace_failing_moves_the_new_version_back_out(env, monkeypatch):
    repo, src = env
    before = _published_twice(repo, src)

    def broken(*a, **k):
        raise OSError("replace failed (simulated)")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="simulated"):
        publish(repo, SIG, files_for(src), config=config_pbtxt(SIG, instances=3))
    assert tree(repo) == before
    assert leftovers(repo) == []


def test_failed_first_publish_does_not_create_the_repository(env):
    repo, src = env
    files = {ONNX_FILE: src / ONNX_FILE, PARITY_FILE: src / "missing.json"}
    with pytest.raises(FileNotFoundError):
        publish(repo, SIG, files, config=config_pbtxt(SIG))
    assert not repo.exists()
    assert leftovers(repo) == []


@pytest.mark.parametrize("problem", ["other_model", "no_model_file", "bad_file_name", "bad_config", "keep0"])
def test_bad_calls_are_refused_before_anything_is_written(env, problem):
    repo, src = env
    before = _published_twice(repo, src)
    config, files, keep = config_pbtxt(SIG), files_for(src), 3
    if problem == "other_model":
        other = next(s for s in SIGS.values() if s.name != SIG.name)
        config = config_pbtxt(other)
    elif problem == "no_model_file":
        files = files_for(src, "torchscript")  # the config loads model.onnx
    elif problem == "bad_file_name":
        files["../escape.onnx"] = src / ONNX_FILE
    elif problem == "bad_config":
        config = config.replace("max_batch_size:", "max_batch_sighs:")
    else:
        keep = 0
    with pytest.raises(PublishError):
        publish(repo, SIG, files, config=config, keep=keep)
    assert tree(repo) == before
    assert leftovers(repo) == []


def test_stale_staging_of_a_killed_publish_is_swept(env):
    repo, src = env
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = repo.parent / f".{repo.name}.staging-{dead.pid}-abc"
    (stale / "version").mkdir(parents=True)
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    assert not stale.exists()


# --------------------------------------------------------------------------- the generic model.py


def test_triton_model_parses_and_keeps_torch_out_of_module_level():
    tree_ = ast.parse(TRITON_MODEL.read_text())
    top = set()
    for node in tree_.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    assert "torch" not in top and "tritonclient" not in top
    assert "ganexport.serving.validation" in top
    assert any(isinstance(n, ast.ClassDef) and n.name == "TritonPythonModel" for n in tree_.body)


def test_serve_start_check_refuses_an_edited_model_py(env):
    """model.py is code the Triton stub runs: an edit after publishing stops `serve` and `demo` before Triton starts."""
    repo, src = env
    publish(repo, SIG, files_for(src), config=config_pbtxt(SIG))
    check_integrity(repo)
    vdir = latest(repo, SIG.name)
    (vdir / PYTHON_MODEL_FILE).write_text((vdir / PYTHON_MODEL_FILE).read_text().replace("INVALID_ARG", "INTERNAL"))
    with pytest.raises(RepositoryError) as err:
        check_integrity(repo)
    assert f"model '{SIG.name}' version 1: model.py changed since it was published" in str(err.value)
