"""What the front door adds to a request, and what its process holds at the largest legal request.

    python -m ganexport.benchmarks.door_cost --repository model_repository            # bench-results/<hw>/
    python -m ganexport.benchmarks.door_cost --repository model_repository --record   # benchmarks/results/<hw>/

The real `ganexport serve` runs in a process of its own, as in production (the door shares that process
with the supervisor, never with the clients). From this process, raw tritonclient requests (no client-side
checks) go alternately to Triton's private ports (which serve prints) and through the door, in short
interleaved blocks, so both see the same machine: the door's cost is the difference of their p50 and p99,
plus the CPU the serve process (and the compiled gRPC lane, its child, where it runs) spent per request
through the door (all their threads, user and system). Where serve's gRPC port is the compiled lane's, the
gRPC rows are measured again through the Python door alone (`serve --grpc-door python`).
Scenarios: a dcgan sample at batch 1 (where the door's cost is largest beside the model's) and a 512x512
translation, over HTTP and gRPC.

Then, in a fresh serve per protocol, the door's peak memory (VmHWM of the serve process and the compiled
lane, which Triton and its stubs are not part of) before and after the largest legal request: 8 images of
1024x1024 (25 MB).

``--nginx`` adds a floor for a compiled proxy: nginx (when installed) passing the same requests to the same
Triton (proxy_pass and grpc_pass over kept-alive upstream connections) with none of the door's checks.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from ganexport.catalog import MAX_IMAGE_SIDE

SAMPLER, TRANSLATOR = "dcgan", "cyclegan_a2b"
PRIVATE = re.compile(r"Triton\s+(\S+) HTTP, (\S+) gRPC \(private")
COMPILED = re.compile(r"gRPC .*compiled lane")  # serve's gRPC line when the compiled lane holds the port


class Serve:
    """`ganexport serve` in a subprocess on free ports; ``public`` and ``private`` are {protocol: host:port}."""

    def __init__(self, repository: Path, models: list[str], grpc_door: str = "auto"):
        from ganexport.serving.triton_server import free_port

        http, grpc_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ganexport", "serve", "--repository", str(repository), "--models", ",".join(models),
             "--http-port", str(http), "--grpc-port", str(grpc_port), "--metrics-port", "0", "--no-supervise",
             "--grpc-door", grpc_door],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if "Ctrl+C stops the server" in line:
                break
        found = PRIVATE.search("".join(seen))
        if found is None:
            self.stop()
            raise click.ClickException("serve did not start: " + "".join(seen[-5:]).strip())
        self.public = {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc_port}"}
        self.private = {"http": found.group(1), "grpc": found.group(2)}
        self.compiled_lane = COMPILED.search("".join(seen)) is not None
        # what each protocol's rows say they went through
        self.via = {"http": "door", "grpc": "door, compiled lane" if self.compiled_lane else "door, Python"}

    def door_pids(self) -> list[int]:
        """The serve process and, where it holds the gRPC port, the compiled lane (its child)."""
        from ganexport.benchmarks.procfs import descendants

        lanes = [p for p in descendants(self.proc.pid)
                 if "ganexport-grpc-door" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        return [self.proc.pid, *lanes]

    def cpu_s(self) -> float:
        total = 0
        for pid in self.door_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_mib(self) -> float:
        peaks = [int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
                 for pid in self.door_pids()]
        return sum(peaks) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Nginx:
    """nginx in front of a Serve's private ports: ``public`` like Serve's, and nothing checked."""

    CONF = """worker_processes 1; daemon off; error_log {d}/error.log warn; pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_max_body_size 64m; client_body_buffer_size 64m; client_body_temp_path {d};
  proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  upstream triton_http {{ server {http}; keepalive 16; }}
  upstream triton_grpc {{ server {grpc}; keepalive 16; }}
  server {{ listen 127.0.0.1:{http_port}; location / {{ proxy_pass http://triton_http; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_buffering off; }} }}
  server {{ listen 127.0.0.1:{grpc_port} http2; location / {{ grpc_pass grpc://triton_grpc; }} }}
}}
"""

    def __init__(self, serve: Serve):
        from ganexport.serving.triton_server import free_port

        self.dir = Path(tempfile.mkdtemp(prefix="ganexport-nginx-"))
        ports = {"http_port": free_port(), "grpc_port": free_port()}
        (self.dir / "nginx.conf").write_text(self.CONF.format(d=self.dir, **serve.private, **ports))
        self.proc = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)])
        self.public = {"http": f"127.0.0.1:{ports['http_port']}", "grpc": f"127.0.0.1:{ports['grpc_port']}"}
        self.private = serve.private
        self.via = {"http": "nginx", "grpc": "nginx"}
        time.sleep(1.0)

    def cpu_s(self) -> float:
        return 0.0  # nginx's worker is a child process: not counted

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def caller(protocol: str, url: str, model: str, array: np.ndarray):
    """A client and a function that sends ``array`` as the model's one input and reads the image back."""
    if protocol == "http":
        import tritonclient.http as client_lib

        client = client_lib.InferenceServerClient(url, network_timeout=600, connection_timeout=600)
    else:
        import tritonclient.grpc as client_lib

        client = client_lib.InferenceServerClient(url)
    name, out = ("image", "translated") if model == TRANSLATOR else ("z", "image")
    datatype = "UINT8" if array.dtype == np.uint8 else "FP32"

    def call():
        tensor = client_lib.InferInput(name, list(array.shape), datatype)
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=True)
            wanted = [client_lib.InferRequestedOutput(out, binary_data=True)]
        else:
            tensor.set_data_from_numpy(array)
            wanted = [client_lib.InferRequestedOutput(out)]
        return client.infer(model, [tensor], outputs=wanted).as_numpy(out)

    return client, call


def latency(serve, model: str, array: np.ndarray, requests: int, block: int,
            protocols: tuple[str, ...] = ("http", "grpc")) -> list[dict]:
    """Direct and through-the-door rows of one model, each protocol, in interleaved blocks."""
    rows = []
    for protocol in protocols:
        via = serve.via[protocol]
        calls = {}
        for path, url in (("direct", serve.private[protocol]), ("door", serve.public[protocol])):
            calls[path] = caller(protocol, url, model, array)
            for _ in range(max(2, block)):  # warm-up: connections, arenas
                calls[path][1]()
        times = {path: [] for path in calls}
        cpu = {path: 0.0 for path in calls}
        for _ in range(max(1, requests // block)):
            for path, (_, call) in calls.items():
                before = serve.cpu_s()
                for _ in range(block):
                    t0 = time.perf_counter()
                    call()
                    times[path].append(time.perf_counter() - t0)
                cpu[path] += serve.cpu_s() - before
        for client, _ in calls.values():
            client.close()
        pct = {path: np.percentile(np.array(t) * 1000, [50, 99]) for path, t in times.items()}
        rows.append({"model": model, "shape": list(array.shape), "protocol": protocol, "via": via,
                     "requests": len(times["door"]),
                     "direct_p50_ms": round(pct["direct"][0], 3), "direct_p99_ms": round(pct["direct"][1], 3),
                     "door_p50_ms": round(pct["door"][0], 3), "door_p99_ms": round(pct["door"][1], 3),
                     "added_p50_ms": round(pct["door"][0] - pct["direct"][0], 3),
                     "added_p99_ms": round(pct["door"][1] - pct["direct"][1], 3),
                     "serve_cpu_us_per_request": round((cpu["door"] - cpu["direct"]) / len(times["door"]) * 1e6)})
        click.echo(f"{model} {protocol}: direct p50 {pct['direct'][0]:.3f} ms, through {via} "
                   f"{pct['door'][0]:.3f} ms: +{rows[-1]['added_p50_ms']:.3f} ms p50, "
                   f"+{rows[-1]['added_p99_ms']:.3f} ms p99, {rows[-1]['serve_cpu_us_per_request']} us of CPU")
    return rows


def memory(repository: Path) -> list[dict]:
    """The serve process's peak RSS before and after the largest legal request, per protocol."""
    largest = np.zeros((8, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3), np.uint8)
    rows = []
    for protocol in ("http", "grpc"):
        serve = Serve(repository, [TRANSLATOR])
        try:
            client, call = caller(protocol, serve.public[protocol], TRANSLATOR, largest[:1, :64, :64])
            call()
            before = serve.peak_mib()
            client.close()
            client, call = caller(protocol, serve.public[protocol], TRANSLATOR, largest)
            assert call().shape == largest.shape
            client.close()
            after = serve.peak_mib()
        finally:
            serve.stop()
        rows.append({"protocol": protocol, "request_mb": round(largest.nbytes / 1e6, 1),
                     "peak_before_mib": round(before), "peak_after_mib": round(after),
                     "growth_mib": round(after - before)})
        click.echo(f"largest legal request over {protocol}: serve's peak RSS {before:.0f} -> {after:.0f} MiB")
    return rows


def markdown(doc: dict) -> str:
    from ganexport.benchmarks.report import hardware_line

    lines = [f"# {doc['title']}", "", f"- hardware: {hardware_line(doc['hardware'])}", f"- command: `{doc['command']}`",
             f"- {doc['started']}; load average before / after: {doc['load_before']} / {doc['load_after']}", "",
             "| model | input | protocol | through | requests | direct p50 ms | through p50 ms | added p50 ms "
             "| direct p99 ms | through p99 ms | added p99 ms | serve CPU us/request |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {'x'.join(map(str, r['shape']))} | {r['protocol']} | {r['via']} | {r['requests']} "
              f"| {r['direct_p50_ms']} | {r['door_p50_ms']} | **{r['added_p50_ms']}** | {r['direct_p99_ms']} "
              f"| {r['door_p99_ms']} | {r['added_p99_ms']} | {r['serve_cpu_us_per_request']} |" for r in doc["latency"]]
    lines += ["", "| largest legal request | protocol | serve's peak RSS before | after | growth |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['request_mb']} MB | {r['protocol']} | {r['peak_before_mib']} MiB | {r['peak_after_mib']} MiB "
              f"| {r['growth_mib']} MiB |" for r in doc["memory"]]
    return "\n".join(lines) + "\n"


@click.command(context_settings=dict(show_default=True, help_option_names=["-h", "--help"]))
@click.option("--repository", default=Path("model_repository"), type=click.Path(path_type=Path, file_okay=False),
              help="A repository with dcgan and cyclegan_a2b published.")
@click.option("--requests", default=600, type=click.IntRange(min=20), help="dcgan requests per protocol and path.")
@click.option("--translations", default=40, type=click.IntRange(min=2),
              help="512x512 translations per protocol and path.")
@click.option("--out", default=Path("bench-results"), type=click.Path(path_type=Path, file_okay=False),
              help="Results go to OUT/<hardware>/NAME.{json,md}.")
@click.option("--record", is_flag=True, help="Write into benchmarks/results/<hardware>/ instead of --out.")
@click.option("--name", default="front-door", help="File name stem.")
@click.option("--nginx", "with_nginx", is_flag=True,
              help="Also measure nginx passing the same requests with no checks (a compiled proxy's floor).")
def main(repository: Path, requests: int, translations: int, out: Path, record: bool, name: str, with_nginx: bool):
    """Front door cost: added p50 / p99 and CPU per request (HTTP, gRPC), and its memory at the largest request."""
    from ganexport.benchmarks import hardware, report
    from ganexport.benchmarks.bench_cli import RECORDED

    hw = hardware.describe()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rng = np.random.default_rng(0)
    serve = Serve(repository, [SAMPLER, TRANSLATOR])
    z, image = rng.standard_normal((1, 64)).astype(np.float32), rng.integers(0, 256, (1, 512, 512, 3), np.uint8)
    try:
        rows = latency(serve, SAMPLER, z, requests, 20) + latency(serve, TRANSLATOR, image, translations, 2)
        if with_nginx:
            nginx = Nginx(serve)
            try:
                rows += latency(nginx, SAMPLER, z, requests, 20)
            finally:
                nginx.stop()
    finally:
        serve.stop()
    if serve.compiled_lane:  # the Python gRPC door too, which tokens and TLS still take
        python = Serve(repository, [SAMPLER, TRANSLATOR], grpc_door="python")
        try:
            rows += latency(python, SAMPLER, z, requests, 20, protocols=("grpc",))
            rows += latency(python, TRANSLATOR, image, translations, 2, protocols=("grpc",))
        finally:
            python.stop()
    doc = {"title": "front door cost", "started": started, "hardware": hw, "load_before": load_before,
           "command": shlex.join(["python", "-m", "ganexport.benchmarks.door_cost", *sys.argv[1:]]),
           "latency": rows, "memory": memory(repository),
           "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
    doc = report.portable(doc, repository)
    folder = (RECORDED if record else out) / hardware.slug(hw)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (folder / f"{name}.md").write_text(markdown(doc))
    click.echo(f"wrote {folder / name}.json, .md")


if __name__ == "__main__":
    main()
