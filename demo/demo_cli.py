"""``ganexport demo``: start Triton on a published repository and the Gradio demo on it; Ctrl-C stops both.

Listed in ganexport/cli.py's COMMANDS, imported only when it runs. Gradio is
imported only when the command runs, so ``ganexport --help`` stays fast.

Listening beyond loopback needs a login file (``--auth-file``, ``user:password`` lines, read by
serving/auth.py as the front door reads its tokens) or ``--insecure``: Gradio's own ``auth=`` then
guards the page and every API route, so gradio_client needs the same login.
"""

from __future__ import annotations

from pathlib import Path

import click

from ganexport.serving.auth import TLS_CA_ENV, TOKEN_ENV
from ganexport.serving.backends import BACKENDS, DEFAULT_URLS

AUTH_FILE_ENV = "GANEXPORT_DEMO_AUTH_FILE"

KINDS = tuple(k for k in BACKENDS if k != "torchscript")


@click.command(context_settings=dict(show_default=True, help_option_names=["-h", "--help"]))
@click.option("--backend", "backend_kind", default="triton-grpc", type=click.Choice(KINDS),
              help="Who runs the models. Triton kinds fall back to in-process ONNX Runtime while Triton "
                   "is unreachable.")
@click.option("--triton-url", default=None,
              help="A Triton server that is already running (host:port). Without it, the demo starts "
                   "Triton itself on --repository (ports --triton-http-port, --triton-grpc-port) and stops it "
                   "on exit.")
@click.option("--repository", default=Path("model_repository"), type=click.Path(path_type=Path, file_okay=False),
              help="Published model repository (ganexport build --model all).")
@click.option("--host", default="127.0.0.1",
              help="Address the demo listens on. Anything but loopback needs --auth-file (or --insecure).")
@click.option("--auth-file", type=click.Path(path_type=Path, dir_okay=False), default=None, envvar=AUTH_FILE_ENV,
              show_envvar=True,
              help="Logins, one user:password line each (passwords of 16+ characters): the page and its API "
                   "ask for one (gradio_client: Client(url, auth=(user, password))).")
@click.option("--insecure", is_flag=True,
              help="Listen beyond loopback without --auth-file, with only a warning: for a network you already "
                   "protect.")
@click.option("--triton-token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="With --triton-url: the token its front door wants (`ganexport serve --token-file`).")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True), default=None, envvar=TLS_CA_ENV,
              show_envvar=True, help="With --triton-url: the CA (PEM) that signed its TLS certificate.")
@click.option("--port", default=7860, type=click.IntRange(1, 65535), help="Port of the demo page.")
@click.option("--triton-http-port", default=8000, type=click.IntRange(0, 65535),
              help="HTTP port of the Triton the demo starts (0: any free port).")
@click.option("--triton-grpc-port", default=8001, type=click.IntRange(0, 65535),
              help="gRPC port of the Triton the demo starts (0: any free port).")
def demo(backend_kind, triton_url, repository, host, auth_file, insecure, triton_token, tls_ca, port,
         triton_http_port, triton_grpc_port):
    """The Gradio demo: sample, pick a class, explore a 2-D latent space, denoise with a diffusion model, translate
    a photo."""
    import signal

    from ganexport.repository import RepositoryError, check_integrity, default_models
    from ganexport.serving.addresses import check_port, exposure_warning, free_port, open_listen_refusal
    from ganexport.serving.auth import TokenBook, TokenFileError, readable_by_others
    from ganexport.serving.triton_server import ServerError, TritonServer

    refusal = None if auth_file is not None or insecure else open_listen_refusal(host, "the demo", "--auth-file",
                                                                                 "password")
    if refusal:  # first: nothing is read or bound before it
        raise click.ClickException(refusal)
    try:
        logins = TokenBook.from_file(auth_file, what="password") if auth_file is not None else None
    except TokenFileError as e:
        raise click.ClickException(f"--auth-file {e}") from None
    if logins is not None and readable_by_others(auth_file):
        click.echo(f"warning: {auth_file} is readable by other users (chmod 600 {auth_file})", err=True)

    def stop(signum, frame):  # SIGTERM must stop Triton too, as Ctrl-C does
        raise KeyboardInterrupt

    # Both explicitly: a process started in the background by a non-interactive shell (CI, nohup, `cmd &`)
    # inherits SIGINT as *ignored*, and Python then never raises KeyboardInterrupt, so Ctrl-C / kill -INT
    # would leave the demo and its Triton running.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    warning = exposure_warning(host, "the demo") if logins is None else None
    if warning:  # first, before anything can fail: the page is what --host exposes
        click.echo(warning, err=True)
    try:
        served = default_models(repository)  # the demo needs no _torchscript twin
        check_integrity(repository, served)  # Triton and the in-process fallback both read these files
    except RepositoryError as e:
        raise click.ClickException(str(e)) from None
    try:  # before Triton starts: a busy page port would otherwise end in Gradio's traceback, Triton left to stop
        check_port(host, port, "the demo page's")
    except ServerError as e:
        raise click.ClickException(f"{e}: give another --port") from None
    server = supervisor = None
    remote = triton_url is not None
    if backend_kind.startswith("triton") and triton_url is None:
        try:
            server = TritonServer(repository, models=served, http_port=triton_http_port or free_port(),
                                  grpc_port=triton_grpc_port or free_port(), metrics_port=0,
                                  planned=True).start(timeout=180)
        except ServerError as e:
            raise click.ClickException(str(e)) from None
        triton_url = server.http_url if backend_kind == "triton-http" else server.grpc_url
        click.echo(f"Triton serves {repository} at {server.base_url} (gRPC {server.grpc_url})")
        supervisor = _supervise(server)
    elif backend_kind.startswith("triton"):
        click.echo(f"Using the Triton server at {triton_url}")
    try:
        from ganexport.demo.app import launch

        click.echo(f"Demo at http://{host}:{port} (Ctrl-C stops it"
                   f"{' and Triton' if server else ''})")
        # only for a server of the user's: the demo's own Triton is plain and takes no token
        access = {"token": triton_token, "tls_ca": tls_ca} if remote and (triton_token or tls_ca) else None
        login = {"auth": logins.check_login, "auth_message": "ganexport demo: log in"} if logins else {}
        launch(backend_kind=backend_kind, triton_url=triton_url or DEFAULT_URLS.get(backend_kind),
               repository=repository, host=host, port=port, triton_access=access, **login)
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()
        if server is not None:
            server.stop()  # removes the view of the served models it started on


def _supervise(server):
    """Watch the demo's own Triton in a thread, as `ganexport serve` does: a crashed server or a dead model
    is restarted on the same ports (the page falls back to in-process ONNX Runtime meanwhile, and returns)."""
    import threading

    from ganexport.serving.supervisor import GaveUp, Supervisor

    supervisor = Supervisor(server, log=lambda line: click.echo(line, err=True), start_timeout=180)

    def watch():
        try:
            supervisor.run()
        except GaveUp as e:
            click.echo(f"supervisor: {e}; the demo serves from in-process ONNX Runtime from now on", err=True)
        except Exception as e:  # noqa: BLE001 - a failed restart: say so, the page keeps its fallback
            click.echo(f"supervisor: Triton could not be restarted ({str(e).splitlines()[0]}); the demo serves "
                       "from in-process ONNX Runtime from now on", err=True)

    thread = threading.Thread(target=watch, name="triton-supervisor", daemon=True)
    thread.start()

    class Handle:
        def stop(self):
            supervisor.stop()
            thread.join(timeout=60)

    return Handle()


if __name__ == "__main__":
    demo()
