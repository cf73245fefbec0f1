"""``ganexport serve``: the Triton server bundled in nvidia-pytriton, on a published model repository.

Listed in ganexport/cli.py's COMMANDS, imported only when it runs. Runs
standalone too (the tests do)::

    python -c "from ganexport.serving.serve_cli import serve; serve()" --repository model_repository

No torch import: serving needs only the binary and the repository. The
server stages the chosen models itself (TritonServer(models=...)); this
module only picks them, runs the pre-start checks and reports.

Listening beyond loopback needs a token file (or ``--insecure``): the refusal comes first, before any
file is read or port checked. With a token file, SIGHUP re-reads it, so a revoked token stops working
without a restart.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from ganexport.cli_common import split_names
from ganexport.repository import RepositoryError, check_integrity, default_models
from ganexport.serving.addresses import DEFAULT_HOST, is_loopback, open_listen_refusal
from ganexport.serving.auth import TOKEN_FILE_ENV, RateLimiter, TokenBook, TokenFileError, readable_by_others
from ganexport.serving.instances import MAX_INSTANCES, describe_plan
from ganexport.serving.tls import TlsError, TlsFiles
from ganexport.serving.triton_log import ServerError, exit_text
from ganexport.serving.triton_server import DEFAULT_PORTS, GRPC_DOORS, ModelInfo, TritonServer


class ServeError(click.ClickException):
    """A one-line error for the user (taken port, empty repository...): exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = list(log_tail or [])

    def show(self, file=None):
        if self.log_tail:
            click.echo("last lines of the Triton log:", err=True)
            for line in self.log_tail:
                click.echo(f"  {line}", err=True)
        click.echo(f"error: {self.format_message()}", err=True)


class ServerDied(ServeError):
    """The server exited on its own after it was ready: not a usage error, so exit code 1."""

    exit_code = 1


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM so that cleanup runs in finally blocks."""


@click.command(context_settings=dict(show_default=True, help_option_names=["-h", "--help"],
                                     max_content_width=100))
@click.option("--repository", type=click.Path(path_type=Path), default=Path("model_repository"),
              help="Triton model repository, as `ganexport build` publishes it.")
@click.option("--host", default=DEFAULT_HOST,
              help="Address to bind. Anything but loopback needs --token-file (or --insecure).")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None, envvar=TOKEN_FILE_ENV,
              show_envvar=True,
              help="The clients' tokens, one name:token line each. Every request but /v2/health/* must then carry "
                   "'Authorization: Bearer <token>' (HTTP header or gRPC metadata); the access log names each "
                   "client by its token's name. SIGHUP re-reads the file: a removed token stops working at once.")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="PEM certificate (chain): the HTTP and gRPC ports speak TLS only. Needs --tls-key.")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The certificate's PEM private key.")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PER_S",
              help="Requests a second each token may send on average (needs --token-file); above it, "
                   "429 / RESOURCE_EXHAUSTED with a Retry-After. [default: no limit]")
@click.option("--burst", type=click.IntRange(min=1), default=10,
              help="With --rate-limit: requests a token may send at once before its rate applies.")
@click.option("--insecure", is_flag=True,
              help="Listen beyond loopback without --token-file, with only a warning: for a network you "
                   "already protect.")
# The ports can come from the environment too, so a script or container moves them once for serve and infer.
@click.option("--http-port", type=int, default=DEFAULT_PORTS["http"], envvar="GANEXPORT_HTTP_PORT", show_envvar=True,
              help="HTTP/REST port.")
@click.option("--grpc-port", type=int, default=DEFAULT_PORTS["grpc"], envvar="GANEXPORT_GRPC_PORT", show_envvar=True,
              help="gRPC port.")
@click.option("--metrics-port", type=int, default=DEFAULT_PORTS["metrics"], envvar="GANEXPORT_METRICS_PORT",
              show_envvar=True, help="Prometheus metrics port; 0 turns metrics off.")
@click.option("--triton-bin", type=click.Path(path_type=Path), default=None,
              help="A tritonserver binary to run instead of the one bundled in nvidia-pytriton.")
@click.option("--models", multiple=True, callback=split_names, metavar="NAME,...",
              help="Serve only these models (comma-separated). Default: every ONNX-Runtime model "
                   "of the repository, plus the _torchscript twins with --torchscript.")
@click.option("--torchscript/--no-torchscript", default=False,
              help="Also load the *_torchscript twins when --models is not given. Each of their stubs "
                   "imports torch (about 250 MB and a second or more per model), so they are opt-in.")
@click.option("--instances", type=click.IntRange(1, MAX_INSTANCES), default=None, metavar="N",
              help=f"Triton instances of every CPU ONNX Runtime model, at most {MAX_INSTANCES} (each is a process "
                   "holding the model). [default: planned per kind of model from the cores Triton gets "
                   "(serving/instances.py); the start-up lines say what]")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="ONNX Runtime threads in each instance. [default: planned, as --instances]")
@click.option("--grpc-door", type=click.Choice(GRPC_DOORS), default="auto",
              help="What takes the public gRPC port: 'compiled', the front door's compiled lane (grpc_door.cc: valid "
                   "inference straight to Triton, everything else to the Python door behind it; no tokens or TLS), "
                   "'python', the Python door alone, or 'auto': compiled where it is built (make setup) and "
                   "neither tokens nor TLS are asked for.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              help="Seconds to wait for every model to load.")
@click.option("--supervise/--no-supervise", default=True,
              help="Restart Triton when it dies; give a model a fresh stub when its stub exits, stops "
                   "answering its one-image probe (every 15 s), or holds 1.5x its resting memory once idle; "
                   "back off, and give up after 5 restarts in 5 minutes.")
def serve(repository: Path, host: str, token_file: Path | None, tls_cert: Path | None, tls_key: Path | None,
          rate_limit: float | None, burst: int, insecure: bool, http_port: int, grpc_port: int, metrics_port: int,
          triton_bin: Path | None, models: tuple[str, ...], torchscript: bool, instances: int | None,
          threads: int | None, grpc_door: str, timeout: float, supervise: bool):
    """Serve a model repository with Triton until Ctrl+C (or SIGTERM), then stop it cleanly.

    Prints the HTTP, gRPC and metrics endpoints and every model with its inputs
    and outputs. Model control is closed to clients: the load/unload API refuses requests.
    A model file that changed since `ganexport build` published it is refused.

    \b
    Examples:
      ganexport serve                                  # every ONNX model, 127.0.0.1:8000 / 8001 / 8002
      ganexport serve --torchscript                    # ... and their TorchScript twins
      ganexport serve --models cyclegan_a2b,cgan       # only these two (less memory, faster start)
      ganexport serve --http-port 9000 --grpc-port 9001 --metrics-port 0
      ganexport serve --instances 1 --threads 4           # every model: one instance of 4 threads
      curl -s localhost:8000/v2/health/ready -o /dev/null -w '%{http_code}\\n'
      ganexport serve --host 0.0.0.0 --token-file tokens.txt --tls-cert cert.pem --tls-key key.pem
      ganexport serve --token-file tokens.txt --rate-limit 20 --burst 40
    """
    refusal = None if token_file is not None or insecure else open_listen_refusal(host, "Triton", "--token-file",
                                                                                   "token")
    if refusal:  # first: nothing is read, checked or bound before it
        raise ServeError(refusal)
    tokens, limiter, tls = _access(token_file, tls_cert, tls_key, rate_limit, burst, host)
    previous = _on_signals(_raise_stop)
    hangup = signal.signal(signal.SIGHUP, _reloader(tokens)) if tokens is not None else None
    try:
        server = TritonServer(repository, models=models or default_models(repository, torchscript), host=host,
                              http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                              triton_bin=triton_bin, tokens=tokens, limiter=limiter, tls=tls, planned=True,
                              instances=instances, threads=threads, grpc_door=grpc_door)
        _run(server, timeout, supervise)
    except _Stop:
        click.echo("stopped")
    except ServerError as e:
        raise ServeError(str(e), e.log_tail) from None
    except RepositoryError as e:
        raise ServeError(str(e)) from None
    finally:
        _restore_signals(previous)
        if hangup is not None:
            signal.signal(signal.SIGHUP, hangup)


def _access(token_file: Path | None, tls_cert: Path | None, tls_key: Path | None, rate_limit: float | None,
            burst: int, host: str) -> tuple[TokenBook | None, RateLimiter | None, TlsFiles | None]:
    """The tokens, the rate limiter and the TLS files, each checked now: one line for what is wrong."""
    if rate_limit is not None and token_file is None:
        raise ServeError("--rate-limit is per token: it needs --token-file")
    try:
        tokens = TokenBook.from_file(token_file) if token_file is not None else None
        tls = TlsFiles.of(tls_cert, tls_key)
    except (TokenFileError, TlsError) as e:
        raise ServeError(f"--token-file {e}" if isinstance(e, TokenFileError) else str(e)) from None
    if tokens is not None and readable_by_others(token_file):
        click.echo(f"warning: {token_file} is readable by other users (chmod 600 {token_file})", err=True)
    if tokens is not None and tls is None and not is_loopback(host):
        click.echo(f"warning: tokens will cross the network in clear text to {host}: add --tls-cert and --tls-key",
                   err=True)
    return tokens, RateLimiter(rate_limit, burst) if rate_limit is not None else None, tls


def _reloader(tokens: TokenBook):
    """SIGHUP: re-read the token file; a file that cannot be read leaves the tokens as they were."""
    def reload(signum, frame) -> None:
        try:
            names = tokens.reload()
        except TokenFileError as e:
            click.echo(f"SIGHUP: {e}; the previous tokens stay in force", err=True)
            return
        click.echo(f"SIGHUP: re-read {tokens.path}: {len(names)} token(s): {', '.join(names)}")
    return reload


def _run(server: TritonServer, timeout: float, supervise: bool = True) -> None:
    """Start, report, and block until a signal (clean stop); supervised, a crash or a dead model restarts
    the server, else the server's own exit is an error."""
    server.check()  # a taken port, an empty repository, an unknown model: one line, before anything is printed
    check_integrity(server.repository, server.model_names())  # changed since `build`: refuse rather than serve
    click.echo(f"starting Triton on {server.repository} ...")
    try:
        server.start(timeout=timeout)
        _report(server)
        if supervise:
            from ganexport.serving.supervisor import GaveUp, Supervisor

            try:
                Supervisor(server, log=click.echo, start_timeout=timeout).run()
            except GaveUp as e:
                raise ServerDied(str(e), e.log_tail) from None
            return
        while server.wait(1.0) is None:
            pass
        died = server.failure(f"tritonserver {exit_text(server.process.returncode)} unexpectedly", plain=False)
        raise ServerDied(str(died), died.log_tail)
    finally:
        _on_signals(_ignore)  # a second Ctrl+C must not interrupt the cleanup
        if server.process is not None and server.process.poll() is None:
            click.echo("stopping Triton ...")
        server.stop()


def _report(server: TritonServer) -> None:
    """The endpoints, then each model with its tensors: what a client needs to call it."""
    meta = server.server_metadata()
    models = server.models()
    click.echo(f"Triton {meta.get('version', '?')} ready in {server.ready_seconds:.1f} s: "
               f"{len(models)} model(s) from {server.repository}")
    bound = "" if server.http_url.startswith(server.host) else f"  (bound to {server.host})"
    click.echo(f"  HTTP     {server.base_url}{bound}")
    door = {"compiled": " (the front door's compiled lane)", "python": "", "none": ""}[server.grpc_door]
    click.echo(f"  gRPC     {server.grpc_url}{' (TLS)' if server.tls is not None else ''}{door}")
    loopback = " (loopback only: it has no authentication)" if server.metrics_host != server.host else ""
    click.echo(f"  metrics  {server.metrics_url or 'off'}{loopback if server.metrics_url else ''}")
    if server.front_door is not None:
        click.echo(f"  Triton   {server.triton_http_url} HTTP, {server.triton_grpc_url} gRPC (private; clients go "
                   "through the front door above)")
    if server.tokens is not None:
        rate = (f"; {server.limiter.rate:g} requests/s each, burst {server.limiter.burst}"
                if server.limiter is not None else "")
        click.echo(f"  tokens   {', '.join(server.tokens.names)} from {server.tokens.path} (SIGHUP re-reads it){rate}")
        click.echo(f"  access   {server.access_log_path}")
    click.echo(f"  log      {server.log_path}")
    click.echo(f"  cores    {describe_plan(server.instances, server.threads)}")
    for model in models:
        _echo_model(model)
    click.echo("Ctrl+C stops the server.")


def _echo_model(model: ModelInfo) -> None:
    click.echo(f"{model.name} (version {model.version}, max batch {model.max_batch_size})")
    rows = [("in", t) for t in model.inputs] + [("out", t) for t in model.outputs]
    width = max((len(t.name) for _, t in rows), default=0)
    for kind, t in rows:
        click.echo(f"  {kind:<4}{t.name:<{width}}  {t.datatype:<6} {list(t.shape)}")


def _raise_stop(signum, frame) -> None:
    """The first SIGINT/SIGTERM unwinds to the cleanup; later ones must not interrupt it."""
    _on_signals(_ignore)
    raise _Stop(signal.Signals(signum).name)


def _ignore(signum, frame) -> None:
    print(f"{signal.Signals(signum).name}: already stopping", file=sys.stderr)


def _on_signals(handler) -> dict:
    """Install ``handler`` for SIGINT and SIGTERM; returns the previous handlers."""
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict) -> None:
    """serve() may run inside another program (tests, CliRunner): leave its handlers as they were."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
