"""`ganexport deploy`: a native repository, a KServe InferenceService and a compose deployment, each checked.

The published repository is real (ganexport.repository_writer, catalog signatures, stand-in model bytes:
deploy copies model files, it never runs them). What deploy writes is read back with the parsers of the
systems that will read it: Triton's protobuf schema, KServe's own model classes, the Compose
Specification's JSON schema. Each check is also shown refusing a broken field. Expected names, shapes and
ports come from the catalog and the serving modules, never typed here.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ganexport import catalog
from ganexport.cli import cli
from ganexport.repository import (
    CHECKSUM_FILE, MODEL_FILES, PARITY_FILE, PYTHON_MODEL_FILE, integrity_problems, latest, read_signature,
)
from ganexport.repository_config import NATIVE_PLATFORMS, config_pbtxt, flavor_refusal, libtorch_names, model_name
from ganexport.repository_writer import publish
from ganexport.serving.deploy_cli import ISVC_FILE, _checked_files
from ganexport.serving.deploy_compose import COMPOSE_FILE, NGINX_FILE, REPOSITORY_DIR, ComposeOptions, compose_file
from ganexport.serving.deploy_kserve import KServeOptions, inference_service
from ganexport.serving.deploy_repository import ServingKnobs, plan
from ganexport.serving.deploy_server import LIVE_PATH, PORTS, READY_PATH
from ganexport.serving.deploy_validate import (
    InvalidDeployment, check_compose, check_model_config, inference_service_errors, kserve_available,
)
from ganexport.serving.validation import request_bytes_limit

SIGS = {name: sig for name, (_, sig) in catalog.triton_models().items()}
# One published model of each kind the catalog has: a sampler, the conditional one, a translator, a diffusion model.
SAMPLER = next(s for s in SIGS.values() if s.kind == "sample" and len(s.inputs) == 1)
CONDITIONAL = next(s for s in SIGS.values() if s.kind == "sample" and len(s.inputs) > 1)
TRANSLATOR = next(s for s in SIGS.values() if s.kind == "translate")
DIFFUSION = next(s for s in SIGS.values() if flavor_refusal(s, "native"))
NATIVE_SIGS = (SAMPLER, CONDITIONAL, TRANSLATOR)
STORAGE = "pvc://models/ganexport"
needs_kserve = pytest.mark.skipif(not kserve_available(), reason="the kserve SDK (test extra) is not installed")


def publish_stand_ins(repo: Path, src: Path) -> None:
    """An embedded-flavour repository as `ganexport build` writes it: ONNX models, the translator's TorchScript twin."""
    src.mkdir(parents=True, exist_ok=True)
    entries = [(sig, "onnxruntime") for sig in (*NATIVE_SIGS, DIFFUSION)] + [(TRANSLATOR, "torchscript")]
    for sig, runtime in entries:
        model_file = src / f"{model_name(sig, runtime)}.{MODEL_FILES[runtime]}"
        model_file.write_bytes(os.urandom(512) + runtime.encode())
        parity = src / f"{model_name(sig, runtime)}.parity.json"
        parity.write_text(json.dumps({"passed": True}))
        publish(repo, sig, {MODEL_FILES[runtime]: model_file, PARITY_FILE: parity},
                config=config_pbtxt(sig, runtime=runtime))


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published")
    publish_stand_ins(root / "model_repository", root / "src")
    return root / "model_repository"


def deploy(*args: str):
    return CliRunner().invoke(cli, ["deploy", *args], prog_name="ganexport")


@pytest.fixture(scope="module")
def deployed(published, tmp_path_factory):
    """One deployment with both targets and non-default knobs, as a user would ask for it."""
    out = tmp_path_factory.mktemp("deployed") / "out"
    result = deploy("--repository", str(published), "--out", str(out), "--kserve", "--compose",
                    "--storage-uri", STORAGE, "--instances", "2", "--max-queue-delay-us", "500",
                    "--max-queue-size", "32", "--replicas", "3", "--torchscript")
    assert result.exit_code == 0, result.output
    return out, result.output


def parse(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


# --------------------------------------------------------------------------- the native repository


def test_every_model_with_a_native_form_is_republished_natively_with_the_knobs(deployed, published):
    out, output = deployed
    repo = out / REPOSITORY_DIR
    expected = {model_name(s, r): (s, r) for s in NATIVE_SIGS for r in ("onnxruntime",)}
    expected[model_name(TRANSLATOR, "torchscript")] = (TRANSLATOR, "torchscript")
    assert sorted(p.name for p in repo.iterdir()) == sorted(expected)
    for name, (sig, runtime) in expected.items():
        cfg = parse((repo / name / "config.pbtxt").read_text())
        rename = libtorch_names(sig) if runtime == "torchscript" else {}
        assert cfg.name == name and cfg.platform == NATIVE_PLATFORMS[runtime] and not cfg.backend
        assert [t.name for t in cfg.input] == [rename.get(t.name, t.name) for t in sig.inputs]
        assert [tuple(t.dims) for t in cfg.output] == [t.shape for t in sig.outputs]
        (group,) = cfg.instance_group
        assert (group.count, model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind)) == (2, "KIND_GPU")
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
        assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 32
        version = latest(repo, name)
        source = latest(published, name)
        assert (version / MODEL_FILES[runtime]).read_bytes() == (source / MODEL_FILES[runtime]).read_bytes()
        assert read_signature(version) == read_signature(source)
        assert not (version / PYTHON_MODEL_FILE).exists()  # no Python backend in the native flavour
        assert (version / CHECKSUM_FILE).is_file() and integrity_problems(version) == []


def test_a_diffusion_model_is_skipped_with_the_reason_build_gives(deployed):
    out, output = deployed
    assert f"skipped: {flavor_refusal(DIFFUSION, 'native')}" in output
    assert not (out / REPOSITORY_DIR / DIFFUSION.name).exists()


def test_named_diffusion_model_is_refused_and_nothing_is_written(published, tmp_path):
    result = deploy("--repository", str(published), "--out", str(tmp_path / "out"), "--models", DIFFUSION.name)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: deploy of {DIFFUSION.name} refused, nothing written: {flavor_refusal(DIFFUSION, 'native')}")
    assert not (tmp_path / "out").exists()


def test_cpu_instances_and_no_gpu_anywhere(published, tmp_path):
    out = tmp_path / "out"
    result = deploy("--repository", str(published), "--out", str(out), "--compose", "--cpu", "--models",
                    SAMPLER.name)
    assert result.exit_code == 0, result.output
    cfg = parse((out / REPOSITORY_DIR / SAMPLER.name / "config.pbtxt").read_text())
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_CPU"
    triton = yaml.safe_load((out / COMPOSE_FILE).read_text())["services"]["triton"]
    assert "resources" not in triton["deploy"]


# --------------------------------------------------------------------------- compose


def test_compose_runs_replicas_behind_a_balancer_on_loopback(deployed):
    out, _ = deployed
    doc = yaml.safe_load((out / COMPOSE_FILE).read_text())
    check_compose(COMPOSE_FILE, doc)  # what was written is what was checked
    triton, balancer = doc["services"]["triton"], doc["services"]["balancer"]
    assert triton["deploy"]["replicas"] == 3
    (mount,) = triton["volumes"]
    assert mount["read_only"] is True and (out / mount["source"]).resolve() == (out / REPOSITORY_DIR).resolve()
    assert f"--model-repository={mount['target']}" in triton["command"]
    assert "--model-control-mode=none" in triton["command"]
    assert "ports" not in triton  # the replicas are reached through the balancer only
    (gpu,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["capabilities"] == ["gpu"]
    assert any(READY_PATH in part for part in triton["healthcheck"]["test"])
    assert [(p["host_ip"], p["published"], p["target"]) for p in balancer["ports"]] == [
        ("127.0.0.1", PORTS[k], PORTS[k]) for k in ("http", "grpc")]
    assert balancer["depends_on"]["triton"]["condition"] == "service_healthy"


def test_nginx_balances_both_protocols_and_caps_bodies_at_the_largest_valid_request(deployed):
    out, _ = deployed
    conf = (out / NGINX_FILE).read_text()
    assert f"server triton:{PORTS['http']} resolve;" in conf and f"server triton:{PORTS['grpc']} resolve;" in conf
    assert "grpc_pass grpc://triton_grpc;" in conf and "proxy_pass http://triton_http;" in conf
    limit = int(conf.split("client_max_body_size ")[1].split(";")[0])
    assert limit >= max(request_bytes_limit(s) for s in NATIVE_SIGS)


def test_public_publishes_on_every_interface(published, tmp_path):
    """With --insecure: without it, and without --token-file, --public is refused (tests/test_auth_deploy.py)."""
    result = deploy("--repository", str(published), "--out", str(tmp_path), "--compose", "--public", "--insecure")
    assert result.exit_code == 0, result.output
    ports = yaml.safe_load((tmp_path / COMPOSE_FILE).read_text())["services"]["balancer"]["ports"]
    assert {p["host_ip"] for p in ports} == {"0.0.0.0"}


def test_compose_check_refuses_broken_fields():
    good = compose_file(ComposeOptions())
    check_compose(COMPOSE_FILE, good)
    with_env = copy.deepcopy(good)  # strings stay strings where compose means strings
    with_env["services"]["triton"]["environment"] = {"CUDA_MODULE_LOADING": "LAZY"}
    check_compose(COMPOSE_FILE, with_env)
    broken = {
        "replica count of 'two'": (("services", "triton", "deploy", "replicas"), "two", "'two' is not of type"),
        "misspelled healthcheck": (("services", "triton", "healthckeck"), {}, "healthckeck"),
        "ports not a list": (("services", "balancer", "ports"), PORTS["http"], "is not of type 'array'"),
    }
    for what, (path, value, words) in broken.items():
        doc = copy.deepcopy(good)
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(InvalidDeployment, match=words) as e:
            check_compose(COMPOSE_FILE, doc)
        assert str(e.value).startswith(f"{COMPOSE_FILE}: services."), what
        assert "\n" not in str(e.value)


def test_the_files_are_checked_as_they_are_built(published):
    """deploy builds every file through this before it writes any (a bad option: no folder, below)."""
    planned = plan(published, ServingKnobs(), models=[SAMPLER.name])
    with pytest.raises(InvalidDeployment, match="replicas"):
        _checked_files(planned, kserve=None, compose=ComposeOptions(replicas="two"))
    assert set(_checked_files(planned, kserve=None, compose=ComposeOptions())) == {COMPOSE_FILE, NGINX_FILE}


# --------------------------------------------------------------------------- KServe


def test_inference_service_serves_the_repository_with_triton_safely(deployed):
    out, _ = deployed
    doc = yaml.safe_load((out / ISVC_FILE).read_text())
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["storageUri"] == STORAGE
    assert doc["spec"]["predictor"]["minReplicas"] == 3
    assert [p["containerPort"] for p in model["ports"]] == [PORTS["http"], PORTS["grpc"]]
    assert model["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": PORTS["http"]}
    assert model["livenessProbe"]["httpGet"]["path"] == LIVE_PATH
    assert "--model-control-mode=none" in model["args"]
    assert not [a for a in model["args"] if a.startswith(("--model-control-mode=", "--load-model"))
                and a != "--model-control-mode=none"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert doc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"


@needs_kserve
def test_kserve_models_take_the_written_service_and_refuse_broken_fields(deployed):
    out, _ = deployed
    good = yaml.safe_load((out / ISVC_FILE).read_text())

    def broken(edit):
        doc = copy.deepcopy(good)
        edit(doc)
        return doc

    predictor = lambda d: d["spec"]["predictor"]  # noqa: E731
    cases = {
        "written": good,
        "misspelled predictor key": broken(lambda d: predictor(d).update(modle=predictor(d).pop("model"))),
        "port as text": broken(lambda d: predictor(d)["model"]["ports"][0].update(containerPort="8000")),
        "probe field misspelled": broken(lambda d: predictor(d)["model"]["readinessProbe"].update(httpGett={})),
        "not triton": broken(lambda d: predictor(d)["model"]["modelFormat"].update(name="onnx")),
        "bad quantity": broken(lambda d: predictor(d)["model"]["resources"]["limits"].update(memory="8 GiB")),
        "port missing": broken(lambda d: predictor(d)["model"]["ports"][0].pop("containerPort")),
    }
    errors = dict(zip(cases, inference_service_errors([(ISVC_FILE, doc) for doc in cases.values()])))
    assert errors.pop("written") is None
    assert "spec.predictor.modle: V1beta1PredictorSpec has no field 'modle' (did you mean 'model'?)" in \
        errors["misspelled predictor key"]
    assert "containerPort: expected int, got '8000'" in errors["port as text"]
    assert "httpGett" in errors["probe field misspelled"] and "httpGet" in errors["probe field misspelled"]
    assert "modelFormat.name must be triton" in errors["not triton"]
    assert "'8 GiB' is not a Kubernetes quantity" in errors["bad quantity"]
    assert "ports[0]: V1ContainerPort: " in errors["port missing"]  # the Kubernetes client's own required field
    assert "required" in errors["port missing"].lower()
    for what, error in errors.items():
        assert error.startswith(f"{ISVC_FILE}: spec."), what
        assert "\n" not in error


def test_kserve_options_are_checked_in_one_line(published, tmp_path):
    for args, words in [(["--kserve"], "--kserve needs --storage-uri"),
                        (["--kserve", "--storage-uri", "http://host/models"], "use pvc://CLAIM/PATH"),
                        (["--kserve", "--storage-uri", "pvc://My_Claim/x"], "not a valid claim name"),
                        (["--kserve", "--storage-uri", STORAGE, "--memory", "8 GB"], "not a Kubernetes quantity"),
                        (["--storage-uri", STORAGE], "--storage-uri applies to --kserve"),
                        (["--cpu", "--tensorrt"], "--tensorrt needs --gpu"),
                        (["--cpu", "--gpus", "1"], "KIND_CPU"),
                        (["--image", "tritonserver"], "a tag is required"),
                        (["--compose", "--name", "My_Project"], "use lowercase letters")]:
        result = deploy("--repository", str(published), "--out", str(tmp_path / "out"), *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines()[-1].startswith("error: ") and words in result.output, args
        assert not (tmp_path / "out").exists()


def test_inference_service_without_gpus_requests_none():
    doc = inference_service(KServeOptions(storage_uri="gs://bucket/ganexport", gpus=0, public=True))
    resources = doc["spec"]["predictor"]["model"]["resources"]
    assert "nvidia.com/gpu" not in resources["limits"] and "labels" not in doc["metadata"]


# --------------------------------------------------------------------------- Triton configs


def test_the_config_check_refuses_a_bad_instance_kind_and_an_unknown_field():
    good = config_pbtxt(SAMPLER, flavor="native", gpu=True)
    check_model_config("config.pbtxt", good)
    for bad, words in [(good.replace("KIND_GPU", "KIND_GPUS"), "KIND_GPUS"),
                       (good.replace("instance_group", "instance_groups"), "instance_groups")]:
        with pytest.raises(InvalidDeployment, match=words) as e:
            check_model_config(f"{REPOSITORY_DIR}/{SAMPLER.name}/config.pbtxt", bad)
        assert str(e.value).startswith(f"{REPOSITORY_DIR}/{SAMPLER.name}/config.pbtxt is not a Triton model config")


def test_a_bounded_queue_needs_the_dynamic_batcher():
    with pytest.raises(ValueError, match="dynamic_batching"):
        config_pbtxt(SAMPLER, flavor="native", max_queue_size=8, dynamic_batching=False)
    assert not parse(config_pbtxt(SAMPLER, flavor="native")).dynamic_batching.HasField("default_queue_policy")


# --------------------------------------------------------------------------- the repository it reads and writes


def test_a_corrupt_published_file_is_refused(tmp_path):
    repo = tmp_path / "model_repository"
    publish_stand_ins(repo, tmp_path / "src")
    model_file = latest(repo, SAMPLER.name) / MODEL_FILES["onnxruntime"]
    data = bytearray(model_file.read_bytes())
    data[0] ^= 1
    model_file.write_bytes(bytes(data))
    result = deploy("--repository", str(repo), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "refusing to serve a corrupt model" in result.output
    assert not (tmp_path / "out").exists()


def test_out_must_not_be_the_published_repository_nor_hold_other_models(published, tmp_path):
    result = deploy("--repository", str(published), "--out", str(published.parent))
    assert result.exit_code == 2 and "published repository" in result.output
    out = tmp_path / "out"
    assert deploy("--repository", str(published), "--out", str(out)).exit_code == 0
    result = deploy("--repository", str(published), "--out", str(out), "--models", SAMPLER.name)
    assert result.exit_code == 2 and CONDITIONAL.name in result.output and "does not include" in result.output
    again = deploy("--repository", str(published), "--out", str(out))  # the same deployment again: a new version
    assert again.exit_code == 0 and f"{SAMPLER.name} (version 2)" in again.output
    assert [p.name for p in (out / REPOSITORY_DIR / SAMPLER.name).iterdir() if p.is_dir()] == ["2"]


def test_help_imports_neither_the_schemas_nor_the_sdks():
    code = ("import sys, runpy; sys.argv = ['ganexport', 'deploy', '--help']\n"
            "try:\n    runpy.run_module('ganexport.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Usage: ganexport deploy" in r.stdout, r.stderr
    loaded = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert not loaded & {"kserve", "kubernetes", "tritonclient", "jsonschema", "yaml", "torch", "onnxruntime"}
