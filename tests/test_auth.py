"""Tokens, TLS and per-token limits on the real front door, as a user starts it:

    ganexport serve --host 0.0.0.0 --token-file tokens.txt --tls-cert cert.pem --tls-key key.pem --rate-limit R

in a process of its own, on a tiny dcgan built for these tests, with certificates made for the test
(tls_certs.py).
Every request goes over the network to it: raw HTTPS and gRPC with no client-side checks, the Backend API,
tritonclient, `ganexport infer`, the examples of docs/serving.md. Without the right token nothing but the health
probes is answered; a client that does not trust the certificate, or speaks plain HTTP to the TLS port,
gets no answer at all; a flood from one token is refused at the door while the others are served.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ganexport.repository import latest, read_signature
from ganexport.serving.addresses import free_port
from ganexport.serving.auth import AUTH_HEADER, SCHEME, TLS_CA_ENV, TOKEN_ENV, TOKEN_FILE_ENV, UNAUTHENTICATED, bearer
from ganexport.serving.backends import BackendError, connect
from ganexport.serving.front_door_grpc import RETRY_AFTER

from test_auth_unit import token_file
from tls_certs import Certs, make_certs

pytestmark = pytest.mark.integration
MODEL = "dcgan"
RATE, BURST = 20.0, 20  # per token; the paced client below asks for half the rate
FLOOD_THREADS = 8  # connections flooding at once, back to back, from one process
TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "serving.md"  # the token and TLS examples


@dataclass
class Served:
    proc: subprocess.Popen
    out: Path  # serve's stdout and stderr
    ports: dict[str, int]
    tokens: dict[str, str]
    token_file: Path
    certs: Certs
    repository: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def printed(self, label: str) -> Path:
        """A path serve printed in its report (``access``, ``log``)."""
        return Path(re.search(rf"^  {label} +(\S+)", self.output(), re.M).group(1))


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl+C, as a user stops serve or the demo; killed if it has not stopped within a minute."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(served_out: Path, proc: subprocess.Popen, marker: str, timeout: float, count: int = 1) -> str:
    """serve's output once ``marker`` appears ``count`` times; fails with the output if serve exits first."""
    deadline = time.monotonic() + timeout
    while True:
        text = served_out.read_text(errors="replace")
        if text.count(marker) >= count:
            return text
        assert proc.poll() is None and time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)


def tiny_repository(tmp_path_factory) -> Path:
    """A repository with one tiny dcgan (ONNX only), built once per session for the auth tests: the server's
    access rules do not depend on the model, and one small build keeps these tests apart from the others'."""
    root = tmp_path_factory.getbasetemp() / "auth-repository"
    repo = root / "repo"
    if not (root / "built").exists():
        from ganexport.export import build as pipeline
        from ganexport.training.loop import TrainConfig, train

        checkpoint = train(TrainConfig(model=MODEL, profile="smoke", dataset="digits", out=str(root / "runs"),
                                       limit=32, progress=False)) / "checkpoint.safetensors"
        pipeline.build(MODEL, checkpoint_path=checkpoint, repo=repo, runtimes=("onnxruntime",), log=lambda m: None)
        (root / "built").touch()
    return repo


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repository = tiny_repository(tmp_path_factory)
    folder = tmp_path_factory.mktemp("auth")
    certs = make_certs(folder / "certs")
    tokens = {name: secrets.token_urlsafe(24) for name in ("alice", "bob", "mallory", "erin", "dave", "demo")}
    path = token_file(folder / "tokens.txt", tokens)
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    cmd = [sys.executable, "-m", "ganexport.cli", "serve", "--repository", str(repository), "--models", MODEL,
           "--host", "0.0.0.0", "--token-file", str(path), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
           "--rate-limit", f"{RATE:g}", "--burst", str(BURST), "--http-port", str(ports["http"]),
           "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"])]
    out = folder / "serve.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for(out, proc, "Ctrl+C stops the server.", timeout=240)
        yield Served(proc, out, ports, tokens, path, certs, repository)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def z(served):
    latent = read_signature(latest(served.repository, MODEL)).inputs[0].shape[0]
    return np.random.default_rng(5).standard_normal((2, latent)).astype(np.float32)


# --------------------------------------------------------------------------- raw requests


def _context(ca: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca) if ca else None)


def _https(served, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
           ca: Path | None = None) -> tuple[int, dict, str]:
    """(status, headers, Triton-style error or body text) of one raw HTTPS request."""
    request = urllib.request.Request(f"https://{served.http}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=_context(ca or served.certs.ca)) as r:
            return r.status, dict(r.headers), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}").get("error", "")


def _channel(served, ca: Path | None = None) -> grpc.Channel:
    return grpc.secure_channel(served.grpc, grpc.ssl_channel_credentials((ca or served.certs.ca).read_bytes()))


def _infer_body(z: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "z", "shape": list(z.shape), "datatype": "FP32",
                                   "data": z.ravel().tolist()}]}).encode()


def _grpc_calls(z: np.ndarray) -> dict[str, tuple[str, object]]:
    """One request of every guarded kind: (stub method, message)."""
    infer = service_pb2.ModelInferRequest(model_name=MODEL)
    infer.inputs.add(name="z", datatype="FP32", shape=list(z.shape))
    infer.raw_input_contents.append(z.tobytes())
    return {"ModelInfer": infer, "ModelMetadata": service_pb2.ModelMetadataRequest(name=MODEL),
            "ModelConfig": service_pb2.ModelConfigRequest(name=MODEL),
            "ModelReady": service_pb2.ModelReadyRequest(name=MODEL),
            "ServerMetadata": service_pb2.ServerMetadataRequest(),
            "RepositoryIndex": service_pb2.RepositoryIndexRequest(),
            "RepositoryModelLoad": service_pb2.RepositoryModelLoadRequest(model_name=MODEL)}


def _grpc(stub, method: str, message, metadata) -> tuple[str, str, dict]:
    """(status name, details, trailing metadata) of one raw gRPC call."""
    try:
        getattr(stub, method)(message, metadata=metadata, timeout=TIMEOUT)
        return "OK", "", {}
    except grpc.RpcError as e:
        return e.code().name, e.details(), dict(e.trailing_metadata() or ())


def _wrong_headers(served) -> dict[str, dict]:
    """Every way of not holding a token of this server; each must get the same answer."""
    elsewhere = secrets.token_urlsafe(24)  # alice's token of another deployment: valid there, not here
    token_file(served.token_file.parent / "other-deployment.txt", {"alice": elsewhere})
    alice = served.tokens["alice"]
    return {"no token": {}, "a wrong token": bearer(secrets.token_urlsafe(24)),
            "a token of another deployment": bearer(elsewhere), "the right token without its scheme": {
                AUTH_HEADER: alice}, "the right token as Basic": {AUTH_HEADER: f"Basic {alice}"},
            "an empty Bearer": {AUTH_HEADER: f"{SCHEME} "}, "the right token with a byte more": bearer(alice + "A")}


# --------------------------------------------------------------------------- who may call


def test_without_the_right_token_only_the_health_probes_are_answered(served, z):
    http_paths = [("POST", f"/v2/models/{MODEL}/infer", _infer_body(z)), ("GET", f"/v2/models/{MODEL}", None),
                  ("GET", f"/v2/models/{MODEL}/config", None), ("GET", f"/v2/models/{MODEL}/ready", None),
                  ("GET", "/v2", None), ("POST", "/v2/repository/index", b"{}"),
                  ("POST", f"/v2/repository/models/{MODEL}/load", b"{}")]
    for why, headers in _wrong_headers(served).items():
        for method, path, body in http_paths:
            status, reply_headers, error = _https(served, method, path, body, headers)
            assert (status, error) == (401, UNAUTHENTICATED), (why, path, status, error)
            assert reply_headers.get("WWW-Authenticate") == SCHEME, (why, path, reply_headers)
        with _channel(served) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            for method, message in _grpc_calls(z).items():
                code, details, _ = _grpc(stub, method, message, list(headers.items()))
                assert (code, details) == ("UNAUTHENTICATED", UNAUTHENTICATED), (why, method, code, details)
    for path in ("/v2/health/ready", "/v2/health/live"):  # load balancers and KServe probes carry no token
        assert _https(served, "GET", path)[0] == 200, path
    with _channel(served) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=TIMEOUT).ready
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=TIMEOUT).live


def test_the_right_token_on_a_trusted_tls_connection_is_answered_over_http_and_grpc(served, z):
    alice = served.tokens["alice"]
    status, _, text = _https(served, "POST", f"/v2/models/{MODEL}/infer", _infer_body(z), bearer(alice))
    assert status == 200 and json.loads(text)["outputs"][0]["shape"][0] == len(z), (status, text[:300])
    with _channel(served) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for method, message in _grpc_calls(z).items():
            code, details, _ = _grpc(stub, method, message, list(bearer(alice).items()))
            expected = "PERMISSION_DENIED" if method == "RepositoryModelLoad" else "OK"  # closed to everyone
            assert code == expected, (method, code, details)
    with connect("onnxruntime", repository=served.repository) as local:
        expected = local.sample(MODEL, z)
    for kind, url in (("triton-http", served.http), ("triton-grpc", served.grpc)):
        with connect(kind, url=url, token=alice, tls_ca=served.certs.ca) as remote:
            np.testing.assert_array_equal(remote.sample(MODEL, z), expected)


def test_infer_sends_the_token_from_the_environment_over_tls(served, tmp_path):
    env = {**os.environ, TOKEN_ENV: served.tokens["alice"], TLS_CA_ENV: str(served.certs.ca)}
    for backend, url in (("triton-http", served.http), ("triton-grpc", served.grpc)):
        out = tmp_path / f"{backend}.png"
        r = subprocess.run([sys.executable, "-m", "ganexport.cli", "infer", "--model", MODEL, "--n", "4",
                            "--backend", backend, "--url", url, "--output", str(out)], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and out.is_file(), r.stderr
    env.pop(TOKEN_ENV)
    r = subprocess.run([sys.executable, "-m", "ganexport.cli", "infer", "--model", MODEL, "--backend", "triton-grpc",
                        "--url", served.grpc, "--output", str(tmp_path / "no.png")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and UNAUTHENTICATED in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_client_that_does_not_trust_the_certificate_gets_no_answer(served, z):
    """It never sends its token: the handshake fails first. Plain HTTP and plain gRPC on the TLS ports get
    nothing either; the server keeps serving the clients that trust it."""
    alice = served.tokens["alice"]
    for kind, url in (("triton-http", served.http), ("triton-grpc", served.grpc)):
        for how in ({"tls_ca": served.certs.other_ca}, {"url": f"https://{url}"}):  # another CA; the system's CAs
            with pytest.raises(BackendError) as e:
                with connect(kind, **{"url": url, **how}, token=alice, timeout=20) as remote:
                    remote.sample(MODEL, z)
            assert "\n" not in str(e.value) and alice not in str(e.value), (kind, how, e.value)
    with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to the HTTPS port
        urllib.request.urlopen(f"http://{served.http}/v2/health/ready", timeout=TIMEOUT)
    with pytest.raises((OSError, http.client.HTTPException)):
        connection = http.client.HTTPConnection(served.http, timeout=TIMEOUT)
        connection.request("POST", f"/v2/models/{MODEL}/infer", _infer_body(z), bearer(alice))
        connection.getresponse()
    with grpc.insecure_channel(served.grpc) as channel:  # plain gRPC to the TLS port
        code, _, _ = _grpc(service_pb2_grpc.GRPCInferenceServiceStub(channel), "ServerReady",
                           service_pb2.ServerReadyRequest(), [])
        assert code == "UNAVAILABLE", code
    for kind, url in (("triton-http", served.http), ("triton-grpc", served.grpc)):  # ganexport's own, plain
        with pytest.raises(BackendError, match="if the server speaks TLS, give --tls-ca"):
            with connect(kind, url=url, token=alice, timeout=20) as remote:
                remote.sample(MODEL, z)
    with connect("triton-grpc", url=served.grpc, token=alice, tls_ca=served.certs.ca) as remote:
        assert remote.sample(MODEL, z).shape[0] == len(z)
    assert "Handshake failed" not in served.output()  # no line per failed handshake: a client could fill the log


def test_a_revoked_token_stops_working_once_sighup_rereads_the_file(served, z):
    dave, alice = served.tokens["dave"], served.tokens["alice"]
    body = _infer_body(z)

    def answers(token: str) -> tuple[int, str]:
        status = _https(served, "POST", f"/v2/models/{MODEL}/infer", body, bearer(token))[0]
        with _channel(served) as channel:
            code = _grpc(service_pb2_grpc.GRPCInferenceServiceStub(channel), "ModelInfer",
                         _grpc_calls(z)["ModelInfer"], list(bearer(token).items()))[0]
        return status, code

    assert answers(dave) == (200, "OK")
    kept = {name: t for name, t in served.tokens.items() if name != "dave"}
    token_file(served.token_file, kept)
    os.kill(served.proc.pid, signal.SIGHUP)
    out = _wait_for(served.out, served.proc, "SIGHUP: re-read", timeout=30)
    assert f"{len(kept)} token(s): {', '.join(kept)}" in out, out[-2000:]
    assert answers(dave) == (401, "UNAUTHENTICATED")  # the same requests, replayed
    assert answers(alice) == (200, "OK")

    served.token_file.write_text(f"alice {alice}\n")  # a typo must not lock everyone out
    os.kill(served.proc.pid, signal.SIGHUP)
    out = _wait_for(served.out, served.proc, "the previous tokens stay in force", timeout=30)
    assert alice not in out
    assert answers(alice) == (200, "OK") and answers(dave) == (401, "UNAUTHENTICATED")
    token_file(served.token_file, kept)


def test_a_burst_above_the_rate_gets_resource_exhausted_with_a_retry_after(served, z):
    """Sent at once over gRPC: the burst is answered, the rest refused without reaching Triton."""
    metadata = list(bearer(served.tokens["erin"]).items())
    with _channel(served) as channel:
        infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        futures = [infer.future(_grpc_calls(z)["ModelInfer"], metadata=metadata, timeout=TIMEOUT)
                   for _ in range(5 * BURST)]
        results = []
        for f in futures:
            try:
                f.result()
                results.append(("OK", {}, ""))
            except grpc.RpcError as e:
                results.append((e.code().name, dict(e.trailing_metadata() or ()), e.details()))
    answered = sum(code == "OK" for code, _, _ in results)
    refused = [(trailing, details) for code, trailing, details in results if code == "RESOURCE_EXHAUSTED"]
    assert answered + len(refused) == len(results), {code for code, _, _ in results}
    assert BURST <= answered < len(results) and refused, answered
    assert all(int(trailing[RETRY_AFTER]) >= 1 and "erin: above the rate limit" in details
               for trailing, details in refused), refused[:3]
    assert re.search(r" grpc  erin ModelInfer RESOURCE_EXHAUSTED ", _access_log(served))


@pytest.mark.parametrize("kind", ["triton-http", "triton-grpc"])
def test_ganexports_client_waits_out_the_rate_limit_instead_of_failing(served, z, kind):
    """Four times the burst at once, as a demo's users sharing one token (its start asks every model's metadata
    in one go): each call is answered, after the wait its refusals name, none fails."""
    token = served.tokens["demo"]
    url = served.http if kind == "triton-http" else served.grpc
    answers, failures = [], []

    def call():  # twice over one connection: the second call comes without a TLS handshake, so the burst is
        try:     # spent however slowly the first calls arrive on a loaded machine
            with connect(kind, url=url, token=token, tls_ca=served.certs.ca, timeout=30) as remote:
                for _ in range(2):
                    answers.append(remote.sample(MODEL, z).shape[0])
        except BackendError as e:
            failures.append(str(e))

    threads = [threading.Thread(target=call) for _ in range(2 * BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures and answers == [len(z)] * 4 * BURST, failures[:3]
    refusal = rf" http  demo POST /v2/models/{MODEL}/infer 429 " if kind == "triton-http" else \
        " grpc  demo ModelInfer RESOURCE_EXHAUSTED "
    assert refusal in _access_log(served), "the burst was never refused: the test did not reach the rate limit"


FLOOD = textwrap.dedent("""
    import http.client, json, os, ssl, sys, threading, time
    port, ca, body_file, path, threads = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    body = open(body_file, "rb").read()
    headers = {"Authorization": "Bearer " + os.environ["GANEXPORT_TOKEN"], "Content-Type": "application/json"}
    stop, counts, lock = threading.Event(), {}, threading.Lock()

    def flood():
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=60,
                                                 context=ssl.create_default_context(cafile=ca))
        mine = {}
        while not stop.is_set():
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            key = str(response.status)
            if response.status == 429 and not response.getheader("Retry-After"):
                key += " without Retry-After"
            mine[key] = mine.get(key, 0) + 1
        with lock:
            for key, n in mine.items():
                counts[key] = counts.get(key, 0) + n

    workers = [threading.Thread(target=flood) for _ in range(threads)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    print("flooding", flush=True)
    sys.stdin.read()  # until the test closes stdin
    stop.set()
    for w in workers:
        w.join(60)
    print(json.dumps({"counts": counts, "seconds": time.monotonic() - t0}), flush=True)
""")


def _paced_latencies(served, token: str, z: np.ndarray, n: int) -> list[float]:
    """``n`` requests at half the rate limit, one after another over one HTTPS connection: ms each."""
    times = []
    with connect("triton-http", url=served.http, token=token, tls_ca=served.certs.ca) as remote:
        remote.sample(MODEL, z)  # the handshake and the signature, outside the figures
        for _ in range(n):
            t0 = time.perf_counter()
            remote.sample(MODEL, z)
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, 2.0 / RATE - times[-1] / 1000))
    return times


def test_a_flood_from_one_token_leaves_the_others_their_share(served, z, tmp_path):
    """mallory floods over HTTPS from another process (FLOOD_THREADS connections, back to back); bob, at half
    the rate limit, is answered every time, and mallory's requests that reach Triton stay within her burst
    and rate. The figure printed (bob's p50 under the flood against his quiet p50) is what docs/reliability.md
    records; it is not asserted: timings on shared cores are no test."""
    bob, n = served.tokens["bob"], 40
    quiet = _paced_latencies(served, bob, z, n)
    body = tmp_path / "body.json"
    body.write_bytes(_infer_body(z))
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(served.ports["http"]), str(served.certs.ca), str(body),
                              f"/v2/models/{MODEL}/infer", str(FLOOD_THREADS)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, TOKEN_ENV: served.tokens["mallory"]})
    try:
        assert flood.stdout.readline().strip() == "flooding", flood.stderr.read()
        time.sleep(1.0)  # past mallory's burst: the door is refusing her now
        loud = _paced_latencies(served, bob, z, n)
        out, err = flood.communicate(input="", timeout=120)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    report = json.loads(out.strip().splitlines()[-1])
    counts, seconds = report["counts"], report["seconds"]
    quiet_p50, loud_p50 = statistics.median(quiet), statistics.median(loud)
    print(f"\n[auth] bob's p50 {quiet_p50:.1f} ms quiet, {loud_p50:.1f} ms under mallory's flood "
          f"({loud_p50 / quiet_p50:.2f}x); mallory in {seconds:.1f} s: {counts.get('200', 0)} answered, "
          f"{counts.get('429', 0)} refused 429 (rate {RATE:g}/s, burst {BURST}), "
          f"{sum(counts.values()) / seconds:.0f} requests/s")
    assert set(counts) <= {"200", "429"} and counts.get("429"), counts  # every 429 carried its Retry-After
    assert counts.get("200", 0) <= BURST + RATE * seconds + 1, counts  # what reached Triton: her share, no more
    refused_lines = re.findall(rf" http  mallory POST /v2/models/{MODEL}/infer 429 .*", _access_log(served))
    assert refused_lines and len(refused_lines) <= seconds + 2, refused_lines  # one a second, not one a refusal
    assert any(line.endswith("like it)") for line in refused_lines), refused_lines


def test_metrics_stay_on_loopback_and_the_public_ports_on_every_interface(served):
    from ganexport.benchmarks.procfs import descendants

    from test_security import listening

    sockets = listening([served.proc.pid, *descendants(served.proc.pid)])
    ports = {port: address for address, port in sockets}
    assert ports[served.ports["metrics"]] == "127.0.0.1", sockets  # Triton's metrics have no authentication
    everywhere = {"0.0.0.0", "::"}  # gRPC binds 0.0.0.0 as the dual-stack [::]
    assert ports[served.ports["http"]] in everywhere and ports[served.ports["grpc"]] in everywhere, sockets
    assert f"http://127.0.0.1:{served.ports['metrics']}/metrics (loopback only" in served.output()


def test_the_real_commands_refuse_to_listen_openly_without_a_token_or_login_file(served, tmp_path):
    """What `ganexport serve --host 0.0.0.0` and `ganexport demo --host 0.0.0.0` print, in a shell: one line
    naming the flag to add, before anything is bound (the ports asked for are the secured server's own)."""
    for command, flag in (("serve", "--token-file"), ("demo", "--auth-file")):
        r = subprocess.run([sys.executable, "-m", "ganexport.cli", command, "--repository", str(served.repository),
                            "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, TOKEN_FILE_ENV)})
        assert r.returncode != 0 and r.stdout == "" and r.stderr.count("\n") == 1, (command, r.stdout, r.stderr)
        assert "--host 0.0.0.0 would let other machines reach" in r.stderr and f"add {flag} FILE" in r.stderr
        assert "--insecure" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def demo(served, tmp_path_factory):
    """`ganexport demo --host 0.0.0.0 --auth-file` on the secured server (its token and CA from the environment)."""
    folder = tmp_path_factory.mktemp("demo")
    logins = {"alice": secrets.token_urlsafe(18), "bob": secrets.token_urlsafe(18)}
    path = token_file(folder / "logins.txt", logins)
    port = free_port()
    cmd = [sys.executable, "-m", "ganexport.cli", "demo", "--backend", "triton-grpc", "--triton-url", served.grpc,
           "--repository", str(served.repository), "--host", "0.0.0.0", "--auth-file", str(path),
           "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", TOKEN_ENV: served.tokens["demo"], TLS_CA_ENV: str(served.certs.ca),
           "GRADIO_TEMP_DIR": str(folder / "gradio")}
    out = folder / "demo.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", logins, out
    finally:
        _stop(proc)


def test_the_demo_wants_a_login_for_its_page_and_its_api(demo, served):
    from gradio_client import Client

    url, logins, out = demo
    for path in ("config", "gradio_api/info", "gradio_api/openapi.json"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=TIMEOUT)
        assert e.value.code == 401, path
    for auth in (None, ("alice", logins["bob"]), ("alice", secrets.token_urlsafe(18)), ("mallory", logins["alice"])):
        with pytest.raises(Exception) as e:  # gradio_client's own error types differ by case
            Client(url, auth=auth, verbose=False).predict(MODEL, 0, 2, api_name="/sample")
        assert logins["alice"] not in str(e.value), auth
    image, status, banner = Client(url, auth=("alice", logins["alice"]), verbose=False).predict(
        MODEL, 0, 2, api_name="/sample")
    assert Path(image).is_file() and f"triton-grpc at {served.grpc}" in status and "fallback" not in status, status
    assert all(secret not in out.read_text() for secret in logins.values())


# --------------------------------------------------------------------------- the docs' examples, verbatim


def readme_example(name: str) -> tuple[str, str]:
    """(language, text) of the docs/serving.md block after ``<!-- example: NAME -->``."""
    match = re.search(rf"<!-- example: {name} -->\s*```(\w+)\n(.*?)```", PAGE.read_text(), re.S)
    assert match, f"{PAGE.name} has no example {name!r}"
    return match.group(1), match.group(2)


@pytest.mark.parametrize("name", ["tls-tritonclient", "tls-connect", "tls-curl"])
def test_readme_token_and_tls_examples_run_verbatim(served, name, tmp_path):
    language, text = readme_example(name)
    env = {"PATH": os.environ["PATH"], "TRITON_HTTP_URL": served.http, "TRITON_GRPC_URL": served.grpc,
           TOKEN_ENV: served.tokens["alice"], TLS_CA_ENV: str(served.certs.ca)}
    if language == "sh" and not any((Path(d) / "curl").exists() for d in env["PATH"].split(":")):
        pytest.skip("curl is not installed")
    cmd = [sys.executable, "-c", text] if language == "python" else ["bash", "-euo", "pipefail", "-c", text]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert served.tokens["alice"] not in r.stdout
    expected = {"tls-tritonclient": ["https dcgan (4,", "grpc+tls dcgan (4,"], "tls-connect": ["dcgan (4,"],
                "tls-curl": ['"name":"dcgan"', "401"]}[name]
    assert all(e in r.stdout for e in expected), r.stdout


# --------------------------------------------------------------------------- what is written down


def _access_log(served) -> str:
    return served.printed("access").read_text()


def test_the_access_log_names_every_request_by_its_token_name_and_no_token_is_written_anywhere(served, z):
    """Last in the file, so every token above has been used: none is in any file the server writes."""
    alice = served.tokens["alice"]
    for headers in (bearer(alice), {}):
        _https(served, "POST", f"/v2/models/{MODEL}/infer", _infer_body(z), headers)
        _https(served, "GET", "/v2/health/ready", headers=headers)
        with _channel(served) as channel:
            _grpc(service_pb2_grpc.GRPCInferenceServiceStub(channel), "ModelInfer", _grpc_calls(z)["ModelInfer"],
                  list(headers.items()))
    access = _access_log(served)
    for line in (rf" http  alice POST /v2/models/{MODEL}/infer 200 127\.0\.0\.1$",
                 rf" grpc  alice ModelInfer {MODEL} OK ipv4:127\.0\.0\.1:\d+$",
                 rf" http  - POST /v2/models/{MODEL}/infer 401 127\.0\.0\.1$",
                 r" grpc  - ModelInfer UNAUTHENTICATED ipv4:127\.0\.0\.1:\d+$"):
        assert re.search(line, access, re.M), (line, access[-2000:])
    assert "/v2/health/" not in access  # probes are not logged
    written = {"access log": access, "serve's output": served.output(),
               "Triton's log": served.printed("log").read_text(errors="replace")}
    for what, text in written.items():
        for name, value in served.tokens.items():
            assert value not in text, f"{name}'s token is in {what}"
