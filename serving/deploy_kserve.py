"""A KServe InferenceService that serves the deployment repository with NVIDIA's Triton.

The predictor uses KServe's current form, ``spec.predictor.model`` with ``modelFormat: {name: triton}``,
not the older framework field ``spec.predictor.triton``: KServe's controller turns the older fields into
this form anyway, and in this one the cluster's Triton ServingRuntime (KServe ships
``kserve-tritonserver``) supplies the image and ``--model-store=/mnt/models``, where the storage
initializer puts ``storageUri``; ``runtimeVersion`` picks the image tag. KServe appends the predictor's
``args`` after the runtime's, so the safe flags of serving/deploy_server.py win where both set one.

It runs as a plain Deployment (``deploymentMode: RawDeployment``): Knative's serverless mode allows one
container port, and Triton answers HTTP on 8000 and gRPC on 8001. The service is cluster-local unless
``public``: nothing here authenticates a request. KServe leaves that to the mesh, and ``ganexport serve``'s
front door is not in front of it, so the written file says how (``mesh_auth_comment``): Istio's
RequestAuthentication and AuthorizationPolicy on the predictor's pods, the health probes left open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ganexport.serving.deploy_server import (
    DEFAULT_IMAGE, LIVE_PATH, PORTS, READY_PATH, DeployError, image_tag, server_args,
)

HEALTH_PREFIX = READY_PATH.rsplit("/", 1)[0] + "/"  # /v2/health/: liveness and readiness

API_VERSION = "serving.kserve.io/v1beta1"
ISTIO_SECURITY = "security.istio.io/v1"
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # the label KServe puts on an InferenceService's pods
KIND = "InferenceService"
STORAGE_SCHEMES = ("pvc", "s3", "gs")
GPU_RESOURCE = "nvidia.com/gpu"
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?")


@dataclass(frozen=True)
class KServeOptions:
    """Where the repository is, what the pod gets, how many pods, who can reach them."""

    storage_uri: str
    name: str = "ganexport"
    namespace: str | None = None
    image: str = DEFAULT_IMAGE
    cpus: str = "4"
    memory: str = "8Gi"
    gpus: int = 1
    replicas: int = 1
    max_replicas: int | None = None
    public: bool = False


def check_storage_uri(uri: str) -> str:
    """``pvc://CLAIM/PATH``, ``s3://BUCKET/PATH`` or ``gs://BUCKET/PATH``: the stores KServe's initializer reads."""
    scheme, sep, rest = uri.partition("://")
    holder = rest.split("/", 1)[0]
    if not sep or scheme not in STORAGE_SCHEMES:
        raise DeployError(f"--storage-uri {uri!r}: use pvc://CLAIM/PATH, s3://BUCKET/PATH or gs://BUCKET/PATH "
                          f"(the model repository, as `ganexport deploy` wrote it under OUT/model_repository)")
    if not _DNS_SUBDOMAIN.fullmatch(holder) or (scheme == "pvc" and not _DNS_LABEL.fullmatch(holder)):
        what = "claim" if scheme == "pvc" else "bucket"
        raise DeployError(f"--storage-uri {uri!r}: {holder!r} is not a valid {what} name (lowercase letters, "
                          f"digits and '-')")
    return uri


def inference_service(opts: KServeOptions) -> dict:
    """The InferenceService as a plain dict (what the YAML file holds), checked for what KServe cannot check."""
    _check(opts)
    metadata = {"name": opts.name,
                "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}
    if opts.namespace:
        metadata["namespace"] = opts.namespace
    if not opts.public:
        metadata["labels"] = {"networking.kserve.io/visibility": "cluster-local"}
    resources = {"cpu": opts.cpus, "memory": opts.memory}
    if opts.gpus:
        resources[GPU_RESOURCE] = str(opts.gpus)
    model = {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "runtimeVersion": image_tag(opts.image),
        "storageUri": opts.storage_uri,
        "args": server_args(gpu=opts.gpus > 0),
        "ports": [{"name": "http", "containerPort": PORTS["http"], "protocol": "TCP"},
                  {"name": "grpc", "containerPort": PORTS["grpc"], "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": PORTS["http"]},
                           "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": PORTS["http"]},
                          "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
    }
    predictor = {"minReplicas": opts.replicas, "maxReplicas": opts.max_replicas or opts.replicas, "model": model}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def mesh_auth(opts: KServeOptions) -> list[dict]:
    """Istio's resources that make the predictor's pods want a JWT from the cluster's identity provider,
    the health probes aside: what the written file documents (in comments: the issuer is the user's)."""
    meta = {"name": f"{opts.name}-require-jwt", **({"namespace": opts.namespace} if opts.namespace else {})}
    selector = {"matchLabels": {ISVC_LABEL: opts.name}}
    return [
        {"apiVersion": ISTIO_SECURITY, "kind": "RequestAuthentication", "metadata": meta, "spec": {
            "selector": selector,
            "jwtRules": [{"issuer": "https://issuer.example.com",
                          "jwksUri": "https://issuer.example.com/.well-known/jwks.json"}]}},
        {"apiVersion": ISTIO_SECURITY, "kind": "AuthorizationPolicy", "metadata": meta, "spec": {
            "selector": selector, "action": "ALLOW",
            "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]},
                      {"to": [{"operation": {"paths": [f"{HEALTH_PREFIX}*"]}}]}]}},
    ]


def mesh_auth_comment(opts: KServeOptions) -> str:
    """YAML comments for the top of the InferenceService: why it needs the mesh, and ``mesh_auth`` to apply."""
    import yaml

    resources = "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=4096) for doc in mesh_auth(opts))
    return ("# Authentication: nothing in this InferenceService checks who calls. KServe leaves it to the mesh, and\n"
            "# `ganexport serve`'s front door (tokens, TLS, limits) is not in front of it. With Istio (the sidecar\n"
            "# injected in the namespace), these two resources let in only requests with a valid JWT from your\n"
            "# identity provider (set issuer and jwksUri), and the health probes; save them uncommented to a\n"
            "# file and `kubectl apply -f` it. Other meshes (Linkerd, an API gateway) have their equivalents.\n"
            + "".join(f"#   {line}\n" if line else "#\n" for line in resources.splitlines()))


def check_name(name: str) -> str:
    """A name both Kubernetes and docker compose take: a DNS label."""
    if not _DNS_LABEL.fullmatch(name):
        raise DeployError(f"--name {name!r}: use lowercase letters, digits and '-', starting with a letter, at most "
                          f"63 characters (an InferenceService and a compose project are named so)")
    return name


def _check(opts: KServeOptions) -> None:
    check_storage_uri(opts.storage_uri)
    check_name(opts.name)
    if opts.namespace is not None and not _DNS_LABEL.fullmatch(opts.namespace):
        raise DeployError(f"--namespace {opts.namespace!r} is not a valid Kubernetes namespace name")
    for flag, value in (("--cpus", opts.cpus), ("--memory", opts.memory)):
        if not _QUANTITY.fullmatch(value):
            raise DeployError(f"{flag} {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 8Gi)")
    if opts.max_replicas is not None and opts.max_replicas < opts.replicas:
        raise DeployError(f"--max-replicas {opts.max_replicas} is below --replicas {opts.replicas}")
