"""``ganexport deploy``: what a user needs to run the published repository at scale, in one folder.

Listed in ganexport/cli.py's COMMANDS, imported only when it runs. The folder holds the published models
republished in the native flavour (serving/deploy_repository.py) and, on request, a KServe
InferenceService (serving/deploy_kserve.py) and a docker compose deployment (serving/deploy_compose.py).
Everything is built in memory and checked (serving/deploy_validate.py) before the first file is written,
so an invalid deployment writes nothing. tritonclient, the schemas and YAML are imported inside the command.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from ganexport.cli_common import CONTEXT, UserError, split_names
from ganexport.serving.auth import TokenFileError, read_secrets
from ganexport.serving.deploy_compose import (
    COMPOSE_FILE, DEFAULT_BALANCER_IMAGE, NGINX_FILE, REPOSITORY_DIR, ComposeOptions, body_limit, compose_file,
    nginx_conf,
)
from ganexport.serving.deploy_kserve import (
    KServeOptions, check_name, check_storage_uri, inference_service, mesh_auth_comment,
)
from ganexport.serving.deploy_repository import ServingKnobs, plan, write
from ganexport.serving.deploy_server import DEFAULT_IMAGE, PORTS, DeployError, check_image

ISVC_FILE = "inferenceservice.yaml"


@click.command(context_settings=CONTEXT)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder to write: {REPOSITORY_DIR}/ always, {ISVC_FILE} with --kserve, "
                   f"{COMPOSE_FILE} and {NGINX_FILE} with --compose.")
@click.option("--kserve", is_flag=True, help="Write a KServe InferenceService (needs --storage-uri).")
@click.option("--compose", is_flag=True, help="Write a docker compose deployment: replicas behind nginx.")
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path), default=Path("model_repository"),
              help="The published repository to deploy, as `ganexport build` wrote it (either flavour).")
@click.option("--models", multiple=True, callback=split_names, metavar="NAME,...",
              help="Deploy only these models. Default: what `ganexport serve` loads, less those without a "
                   "native form (a diffusion model), which are skipped with a line each.")
@click.option("--torchscript/--no-torchscript", default=False,
              help="Also deploy the *_torchscript twins when --models is not given.")
@click.option("--gpu/--cpu", default=True, help="Instance groups on GPU (KIND_GPU) or CPU (KIND_CPU).")
@click.option("--instances", default=1, type=click.IntRange(min=1), help="Model instances per model per replica.")
@click.option("--max-queue-delay-us", default=0, type=click.IntRange(min=0),
              help="Dynamic batching: how long a request may wait for others (0: measured best on CPU, "
                   "docs/benchmarks.md; a busy instance still batches what queued meanwhile).")
@click.option("--max-queue-size", default=0, type=click.IntRange(min=0),
              help="Requests queued per model before Triton answers UNAVAILABLE; 0 leaves the queue unbounded.")
@click.option("--tensorrt", is_flag=True, help="With --gpu: run the ONNX models through TensorRT (FP16).")
@click.option("--image", default=DEFAULT_IMAGE, help="NVIDIA's Triton image (compose), or its tag (KServe's "
                                                       "runtimeVersion).")
@click.option("--replicas", default=2, type=click.IntRange(min=1),
              help="Triton replicas: compose's deploy.replicas, KServe's minReplicas.")
@click.option("--public", is_flag=True, help="Publish on every interface (compose: needs --token-file or "
                                              "--insecure) / leave the service cluster-external (KServe: put "
                                              "the mesh's authentication in front, as its file says).")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="compose: nginx wants one of these tokens (name:token lines, as `ganexport serve --token-file` "
                   "reads them) on every request but the health probes.")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="compose: nginx terminates TLS on both ports with this PEM certificate (needs --tls-key).")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="compose: the certificate's PEM private key.")
@click.option("--insecure", is_flag=True, help="compose: --public without --token-file (a network you protect).")
@click.option("--storage-uri", default=None, metavar="pvc://CLAIM/PATH|s3://BUCKET/PATH|gs://BUCKET/PATH",
              help=f"KServe: where you copy OUT/{REPOSITORY_DIR}.")
@click.option("--name", default="ganexport", help="The InferenceService / compose project name.")
@click.option("--namespace", default=None, help="KServe: the InferenceService's namespace (default: kubectl's).")
@click.option("--cpus", default="4", help="KServe: CPU per pod (a Kubernetes quantity).")
@click.option("--memory", default="8Gi", help="KServe: memory per pod (a Kubernetes quantity).")
@click.option("--gpus", default=None, type=click.IntRange(min=0),
              help="KServe: GPUs per pod. Default: 1 with --gpu, 0 with --cpu.")
@click.option("--max-replicas", default=None, type=click.IntRange(min=1),
              help="KServe: let the autoscaler go up to this many pods. Default: --replicas.")
@click.option("--gpu-devices", default="0", metavar="ID,...", help="compose: the host GPUs the replicas share.")
@click.option("--balancer-image", default=DEFAULT_BALANCER_IMAGE, help="compose: the nginx image (1.27.3+).")
def deploy(out, kserve, compose, repository, models, torchscript, gpu, instances, max_queue_delay_us,
           max_queue_size, tensorrt, image, replicas, public, token_file, tls_cert, tls_key, insecure, storage_uri,
           name, namespace, cpus, memory, gpus, max_replicas, gpu_devices, balancer_image):
    """Write what NVIDIA's Triton needs to serve the published models at scale, checked before it is written.

    OUT/model_repository is the published repository in the native flavour (onnxruntime_onnx /
    pytorch_libtorch) with these instance groups and batching; --kserve and --compose add the files
    that serve it. Every file is checked first (Triton's config schema, KServe's models, the Compose
    Specification's schema); an invalid one writes nothing.

    \b
    Examples:
      ganexport deploy --compose --out deploy/                  # 2 GPU replicas behind nginx on 127.0.0.1
      cd deploy && docker compose up -d && curl -s localhost:8000/v2/health/ready -w '%{http_code}\\n'
      ganexport deploy --compose --replicas 4 --cpu --instances 2 --out deploy-cpu/
      ganexport deploy --kserve --storage-uri pvc://models/ganexport --out deploy/
      kubectl apply -f deploy/inferenceservice.yaml             # after copying deploy/model_repository there
      ganexport deploy --kserve --compose --storage-uri gs://bucket/ganexport --tensorrt \\
          --max-queue-delay-us 500 --models cyclegan_a2b,cyclegan_b2a --out deploy/
      ganexport deploy --compose --public --token-file tokens.txt --tls-cert cert.pem --tls-key key.pem --out deploy/
    """
    if tensorrt and not gpu:
        raise UserError("--tensorrt needs --gpu (TensorRT runs on GPU instances only)")
    gpus = (1 if gpu else 0) if gpus is None else gpus
    if gpu != (gpus > 0):
        raise UserError(f"--{'gpu' if gpu else 'cpu'} with --gpus {gpus}: KIND_GPU instances need a GPU per pod, "
                        "KIND_CPU ones none")
    if kserve and not storage_uri:
        raise UserError("--kserve needs --storage-uri: where the cluster reads OUT/model_repository "
                        "(pvc://CLAIM/PATH, s3://BUCKET/PATH or gs://BUCKET/PATH)")
    for flag, value in (("--storage-uri", storage_uri), ("--namespace", namespace), ("--max-replicas", max_replicas)):
        if value is not None and not kserve:
            raise UserError(f"{flag} applies to --kserve")
    for flag, value in (("--token-file", token_file), ("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if value is not None and not compose:
            raise UserError(f"{flag} applies to --compose (KServe: the mesh authenticates; see its file)")
    if (tls_cert is None) != (tls_key is None):
        raise UserError("--tls-cert and --tls-key go together: give both (the certificate and its key), or neither")
    if compose and public and token_file is None and not insecure:
        raise UserError("--compose --public would let other machines reach the balancer with no authentication: "
                        "add --token-file FILE (one name:token line per client), or --insecure if your network "
                        "already keeps strangers out")
    try:
        tokens = read_secrets(token_file) if token_file is not None else None
    except TokenFileError as e:
        raise UserError(f"--token-file {e}") from None
    from ganexport.repository import RepositoryError
    from ganexport.repository_writer import PublishError

    try:
        check_image(image)
        check_name(name)
        if kserve:
            check_storage_uri(storage_uri)
        planned = plan(repository, ServingKnobs(gpu=gpu, instances=instances, max_queue_delay_us=max_queue_delay_us,
                                                max_queue_size=max_queue_size, tensorrt=tensorrt),
                       models=models, torchscript=torchscript, log=click.echo)
        kserve_opts = KServeOptions(
            storage_uri=storage_uri, name=name, namespace=namespace, image=image, cpus=cpus, memory=memory,
            gpus=gpus, replicas=replicas, max_replicas=max_replicas, public=public) if kserve else None
        compose_opts = ComposeOptions(
            image=image, replicas=replicas, gpu=gpu, public=public, balancer_image=balancer_image, project=name,
            gpu_devices=tuple(d.strip() for d in gpu_devices.split(",") if d.strip()), tls_cert=tls_cert,
            tls_key=tls_key) if compose else None
        files = _checked_files(planned, kserve=kserve_opts, compose=compose_opts, tokens=tokens)
        published = write(out / REPOSITORY_DIR, repository, planned)
        for filename, text in files.items():
            _write_text(out / filename, text)
    except (DeployError, RepositoryError, PublishError) as e:
        raise UserError(str(e)) from None
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise UserError(f"cannot write into {out}: {e.strerror or e}{where}") from None
    _report(out, published, files, storage_uri, public)


def _checked_files(planned, *, kserve: KServeOptions | None, compose: ComposeOptions | None,
                   tokens: dict[str, str] | None = None) -> dict[str, str]:
    """Every file but the repository's, as text, each checked; DeployError (nothing written) when one fails."""
    from ganexport.serving import deploy_validate as check

    for m in planned:
        check.check_model_config(f"{REPOSITORY_DIR}/{m.name}/config.pbtxt", m.config)
    files = {}
    models = ", ".join(m.name for m in planned)
    if kserve:
        doc = inference_service(kserve)
        if check.kserve_available():
            check.check_inference_service(ISVC_FILE, doc)
        else:
            click.echo(f"note: the kserve package is not installed, so {ISVC_FILE} was not checked against "
                       "KServe's models (pip install kserve)")
        files[ISVC_FILE] = _yaml(doc, f"KServe InferenceService serving {models}", mesh_auth_comment(kserve))
    if compose:
        doc = compose_file(compose)
        check.check_compose(COMPOSE_FILE, doc)
        files[COMPOSE_FILE] = _yaml(doc, f"docker compose: {compose.replicas} Triton replicas serving {models}")
        files[NGINX_FILE] = nginx_conf(body_limit({m.name: m.sig for m in planned}), tokens,
                                       tls=compose.tls_cert is not None)
    return files


def _yaml(doc: dict, what: str, comment: str = "") -> str:
    import yaml

    return f"# Written by `ganexport deploy`: {what}.\n" + comment + yaml.safe_dump(doc, sort_keys=False, width=4096)


def _write_text(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file beside ``path``, then one rename. The file is readable by
    its owner only (mkstemp's mode): nginx.conf may hold tokens."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _report(out: Path, published, files, storage_uri: str | None, public: bool) -> None:
    click.echo(f"wrote {out / REPOSITORY_DIR}: " + ", ".join(f"{n} (version {v})" for n, v in published))
    for filename in files:
        click.echo(f"wrote {out / filename}")
    if COMPOSE_FILE in files:
        where = "every interface" if public else "127.0.0.1"
        click.echo(f"run it: cd {out} && docker compose up -d   # HTTP :{PORTS['http']}, gRPC :{PORTS['grpc']} "
                   f"on {where}")
    if ISVC_FILE in files:
        click.echo(f"run it: copy {out / REPOSITORY_DIR}/ to {storage_uri}, then kubectl apply -f {out / ISVC_FILE}")
