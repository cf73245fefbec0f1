"""A docker compose deployment on one host: N Triton replicas behind an nginx load balancer.

    OUT/compose.yaml       the services: ``triton`` (N replicas, the repository mounted read-only, the GPU
                           reserved, healthy once /v2/health/ready answers 200) and ``balancer``
    OUT/nginx.conf         the balancer: HTTP and gRPC, each to the replica with the fewest open requests
    OUT/model_repository/  what the replicas serve (serving/deploy_repository.py)

Only the balancer publishes ports, on 127.0.0.1 unless ``public``; the replicas are reached through it
alone, at Docker's DNS name for the service (one address per replica, re-resolved as replicas come and go:
nginx's ``resolve``, open source since 1.27.3). Request bodies are capped at the largest valid request of
any deployed model, the rule of ``ganexport serve``'s front door (serving/front_door.py), which this
deployment does not run. The file uses no ``${...}`` interpolation, so every count is a plain integer
(serving/deploy_validate.py holds it to that).

Given the tokens of a ``serve --token-file`` (serving/auth.py), nginx wants the same ``Authorization:
Bearer`` header on every request but the health probes: a ``map`` from each header to its token's name,
401 for anything else (gRPC clients read it as UNAUTHENTICATED), the name in the access log, the header not
passed on to Triton. nginx.conf then holds the tokens: it is written readable by its owner only. Given a
certificate and key, nginx terminates TLS on both ports (mounted read-only from where they are).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ganexport.catalog import Signature
from ganexport.serving.auth import AUTH_HEADER, SCHEME, UNAUTHENTICATED
from ganexport.serving.deploy_server import (
    CONTAINER_REPOSITORY, DEFAULT_IMAGE, PORTS, READY_PATH, DeployError, check_image, server_args,
)

COMPOSE_FILE = "compose.yaml"
NGINX_FILE = "nginx.conf"
REPOSITORY_DIR = "model_repository"
DEFAULT_BALANCER_IMAGE = "nginx:1.28-alpine"  # 1.27.3 or later: upstream servers with `resolve`
DOCKER_DNS = "127.0.0.11"
SHM_BYTES = 1 << 30  # NVIDIA's recommended --shm-size=1g for Triton containers, in bytes
STACK_BYTES = 64 << 20  # ... and --ulimit stack=67108864
TIMEOUT_S = 300  # a 1024x1024 translation on CPU instances takes seconds; TensorRT engines build on first load
TLS_DIR = "/etc/nginx/tls"  # where the balancer sees the certificate and key
GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_HEALTH = ("ServerLive", "ServerReady")  # the gRPC health probes: open, as /v2/health/* over HTTP


@dataclass(frozen=True)
class ComposeOptions:
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    gpu: bool = True
    gpu_devices: tuple[str, ...] = ("0",)
    public: bool = False
    balancer_image: str = DEFAULT_BALANCER_IMAGE
    project: str = "ganexport"
    tls_cert: Path | None = None  # with tls_key: nginx terminates TLS on both ports
    tls_key: Path | None = None


def body_limit(signatures: Mapping[str, Signature]) -> int:
    """The largest valid request body of any deployed model, JSON or binary (the front door's caps)."""
    from ganexport.serving.front_door import Gatekeeper  # numpy: imported when a deployment is written

    gate = Gatekeeper(signatures)
    return max(gate.body_limit(name, binary=binary) for name in signatures for binary in (True, False))


def compose_file(opts: ComposeOptions) -> dict:
    """The compose file as a plain dict (what compose.yaml holds)."""
    check_image(opts.image)
    check_image(opts.balancer_image)
    if opts.gpu and not opts.gpu_devices:
        raise DeployError("--gpu needs at least one --gpu-devices id")
    host = "0.0.0.0" if opts.public else "127.0.0.1"
    triton = {
        "image": opts.image,
        "command": ["tritonserver", f"--model-repository={CONTAINER_REPOSITORY}", *server_args(gpu=opts.gpu)],
        "volumes": [{"type": "bind", "source": f"./{REPOSITORY_DIR}", "target": CONTAINER_REPOSITORY,
                     "read_only": True}],
        "expose": [str(PORTS["http"]), str(PORTS["grpc"]), str(PORTS["metrics"])],
        "shm_size": SHM_BYTES,
        "ulimits": {"memlock": -1, "stack": STACK_BYTES},
        "healthcheck": _healthcheck(_bash_ready_probe(), start_s=TIMEOUT_S),
        "restart": "unless-stopped",
        "deploy": {"replicas": opts.replicas},
    }
    if opts.gpu:
        triton["deploy"]["resources"] = {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": list(opts.gpu_devices), "capabilities": ["gpu"]}]}}
    tls = opts.tls_cert is not None
    volumes = [{"type": "bind", "source": f"./{NGINX_FILE}", "target": "/etc/nginx/nginx.conf", "read_only": True}]
    if tls:
        volumes += [{"type": "bind", "source": str(Path(path).resolve()), "target": f"{TLS_DIR}/{name}",
                     "read_only": True} for path, name in ((opts.tls_cert, "cert.pem"), (opts.tls_key, "key.pem"))]
    # busybox wget, in the alpine image: healthy while at least one replica is ready behind it (over
    # loopback inside the container, where the certificate's name does not apply)
    probe = ["CMD", "wget", "-q", "-O", "/dev/null", *(["--no-check-certificate"] if tls else []),
             f"{'https' if tls else 'http'}://127.0.0.1:{PORTS['http']}{READY_PATH}"]
    balancer = {
        "image": opts.balancer_image,
        "volumes": volumes,
        "ports": [{"target": PORTS[p], "published": PORTS[p], "host_ip": host, "protocol": "tcp"}
                  for p in ("http", "grpc")],
        "depends_on": {"triton": {"condition": "service_healthy"}},
        "healthcheck": _healthcheck(probe, start_s=10),
        "restart": "unless-stopped",
    }
    return {"name": opts.project, "services": {"triton": triton, "balancer": balancer}}


def _bash_ready_probe() -> list[str]:
    """GET /v2/health/ready through bash's /dev/tcp: needs no curl or wget in NVIDIA's image."""
    request = f"printf 'GET {READY_PATH} HTTP/1.0\\r\\n\\r\\n' >&3"
    return ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORTS['http']} && {request} "
                                 "&& head -n 1 <&3 | grep -q ' 200 '"]


def _healthcheck(test: list[str], start_s: int) -> dict:
    return {"test": test, "interval": "10s", "timeout": "5s", "retries": 3, "start_period": f"{start_s}s"}


def nginx_conf(max_body_bytes: int, tokens: Mapping[str, str] | None = None, tls: bool = False) -> str:
    """nginx.conf for the balancer: one upstream per protocol over every replica of the triton service; with
    ``tokens`` ({name: token}) every request but the health probes needs one, with ``tls`` both ports are TLS."""
    http, grpc = PORTS["http"], PORTS["grpc"]
    listen = " ssl" if tls else ""
    certificate = (f"""
    ssl_certificate {TLS_DIR}/cert.pem;
    ssl_certificate_key {TLS_DIR}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;""" if tls else "")
    who = _token_map(tokens) if tokens else ""
    http_guard = grpc_guard = ""
    http_open = grpc_open = ""
    if tokens:
        message = UNAUTHENTICATED.replace('"', "'")
        http_guard = f"""
            if ($ganexport_client = "") {{
                add_header WWW-Authenticate {SCHEME} always;
                return 401 '{{"error":"{message}"}}';
            }}
            proxy_set_header {AUTH_HEADER.title()} "";  # Triton has no use for the client's token"""
        grpc_guard = f"""
            if ($ganexport_client = "") {{
                return 401;  # gRPC clients read an HTTP 401 as UNAUTHENTICATED
            }}
            grpc_set_header {AUTH_HEADER.title()} "";"""
        http_open = """
        location /v2/health/ {  # load balancers and probes carry no token
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"""
        grpc_open = "".join(f"""
        location = /{GRPC_SERVICE}/{method} {{
            grpc_pass grpc://triton_grpc;
        }}""" for method in GRPC_HEALTH)
    return f"""# Written by `ganexport deploy --compose`: HTTP and gRPC to every replica of the triton service.
worker_processes auto;
events {{ worker_connections 4096; }}

http {{
    resolver {DOCKER_DNS} valid=10s ipv6=off;  # Docker's DNS: one address per running replica
    client_max_body_size {max_body_bytes};  # the largest valid request of any deployed model
    proxy_read_timeout {TIMEOUT_S}s;
    proxy_send_timeout {TIMEOUT_S}s;
    grpc_read_timeout {TIMEOUT_S}s;
    grpc_send_timeout {TIMEOUT_S}s;{certificate}{who}

    upstream triton_http {{
        zone triton_http 64k;
        least_conn;
        server triton:{http} resolve;
        keepalive 64;
    }}
    upstream triton_grpc {{
        zone triton_grpc 64k;
        least_conn;
        server triton:{grpc} resolve;
        keepalive 64;
    }}

    server {{
        listen {http}{listen};{http_open}
        location / {{{http_guard}
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen {grpc}{listen};
        http2 on;{grpc_open}
        location / {{{grpc_guard}
            grpc_pass grpc://triton_grpc;
        }}
    }}
}}
"""


def _token_map(tokens: Mapping[str, str]) -> str:
    """Each token's whole Authorization header to its name, "" for anything else; the access log names the
    client. Tokens are RFC 6750 b64token characters (serving/auth.py), which need no escaping in quotes."""
    lines = "".join(f'\n        "{SCHEME} {token}" {name};' for name, token in tokens.items())
    return f"""

    # Who may call: the Authorization header of each token to its name (`ganexport deploy --token-file`).
    map $http_{AUTH_HEADER} $ganexport_client {{
        default "";{lines}
    }}
    log_format ganexport '$remote_addr $ganexport_client [$time_local] "$request" $status $body_bytes_sent';
    access_log /var/log/nginx/access.log ganexport;"""
