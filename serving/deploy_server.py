"""How NVIDIA's Triton container serves a deployment: its image, its flags, its ports, its health endpoints.

Both deployment targets (serving/deploy_kserve.py, serving/deploy_compose.py) run the same server, so the
flags that make it safe are written once, here: model control closed (the repository API cannot load or
unload anything; ``ganexport serve`` opens it to its own supervisor alone, behind its front door and a
key, which a deployment has neither of), strict readiness, no auto-completed configs (the native
configs are complete), and the shared-memory API restricted to a header value that only the written
file holds. Inside a container Triton listens on every interface; what reaches it from outside is
decided by the target (ports bound to 127.0.0.1 in compose, a cluster-local service in KServe).
"""

from __future__ import annotations

import re
import secrets

from ganexport.serving.triton_server import DEFAULT_PORTS, RESTRICTED_HEADER

# NVIDIA's Triton images: the -py3 ones carry the onnxruntime and pytorch backends the native flavour needs.
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
PORTS = dict(DEFAULT_PORTS)  # HTTP 8000, gRPC 8001, metrics 8002: the ports `ganexport serve` uses
CONTAINER_REPOSITORY = "/models"  # where the compose file mounts the repository (KServe uses its own: /mnt/models)

_IMAGE = re.compile(r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
                    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")


class DeployError(ValueError):
    """A deployment cannot be written as asked; the message is one line for the user."""


def check_image(image: str) -> str:
    """``image`` when it is ``registry/name:tag`` with an explicit tag (KServe needs the tag as runtimeVersion)."""
    if not _IMAGE.fullmatch(image):
        raise DeployError(f"image {image!r} is not NAME:TAG (e.g. {DEFAULT_IMAGE}); a tag is required")
    return image


def image_tag(image: str) -> str:
    return _IMAGE.fullmatch(check_image(image)).group("tag")


def server_args(*, gpu: bool) -> list[str]:
    """tritonserver's flags for a deployment, the model repository and the ports left to the target."""
    key = secrets.token_hex(16)  # unlocks shared memory for whoever holds the file; no client of ours needs it
    args = ["--model-control-mode=none", "--strict-readiness=true", "--disable-auto-complete-config",
            "--exit-on-error=true", "--exit-timeout-secs=30",
            f"--http-port={PORTS['http']}", f"--grpc-port={PORTS['grpc']}", f"--metrics-port={PORTS['metrics']}",
            f"--http-restricted-api=shared-memory:{RESTRICTED_HEADER}={key}",
            f"--grpc-restricted-protocol=shared-memory:{RESTRICTED_HEADER}={key}"]
    if not gpu:
        args.append("--allow-gpu-metrics=false")
    return args
