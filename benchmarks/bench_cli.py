"""``ganexport bench``: every serving path side by side, or ``--soak`` for minutes of load.

Listed in ganexport/cli.py's COMMANDS, imported only when it runs. Heavy imports
(torch for the eager row, matplotlib for the plot) happen inside the command.
"""

from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path

import click

from ganexport import catalog

KINDS = ("eager", "torchscript", "onnxruntime", "triton-http", "triton-grpc")
SOAK_TARGETS = ("triton-grpc", "triton-http", "demo")
RECORDED = Path(__file__).resolve().parent / "results"  # the figures docs/benchmarks.md cites; written by --record only


def _ints(ctx, param, value: str) -> list[int]:
    try:
        found = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated integers, e.g. 1,8") from None
    if not found or min(found) < 1:
        raise click.BadParameter(f"{value!r}: give positive integers")
    return found


def _kinds(ctx, param, value: str) -> list[str]:
    found = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [k for k in found if k not in KINDS]
    if unknown or not found:
        raise click.BadParameter(f"unknown backend {', '.join(unknown) or value!r}; choose from {', '.join(KINDS)}")
    return list(dict.fromkeys(found))


def _checkpoints(ctx, param, value: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for item in value:
        model, eq, path = item.partition("=")
        if not eq or model not in catalog.models() or not Path(path).is_file():
            raise click.BadParameter(f"{item!r}: give TRAINING_MODEL=PATH to an existing checkpoint, "
                                     f"e.g. dcgan=runs/dcgan/<run-id>/checkpoint.safetensors")
        found[model] = Path(path)
    return found


def _variants(ctx, param, value: tuple[str, ...]):
    from ganexport.benchmarks.targets import Variant

    try:
        return [Variant.parse(v) for v in value]
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def triton_names(model: str, repository: Path) -> tuple[list[str], list[str]]:
    """``--model`` (a training model, a Triton model, comma lists, or all) -> the ONNX Triton models
    to bench, and notes for those of ``all`` that are not published."""
    from ganexport.repository import latest

    served, models = catalog.triton_models(), catalog.models()  # the imported models too
    wanted = []
    for item in (m.strip() for m in model.split(",") if m.strip()):
        if item == "all":
            wanted += list(served)
        elif item in models:
            wanted += [s.name for s in models[item].signatures()]
        elif item in served:
            wanted.append(item)
        else:
            known = ", ".join(dict.fromkeys(["all", *models, *served]))
            raise click.BadParameter(f"unknown model {item!r}; choose from {known}", param_hint="--model")
    wanted = list(dict.fromkeys(wanted))
    if not repository.is_dir():
        return wanted, []
    missing = [m for m in wanted if latest(repository, m) is None]
    if missing and "all" not in model.split(","):
        raise click.UsageError(f"{', '.join(missing)} not published in {repository} (run ganexport build)")
    return [m for m in wanted if m not in missing], [f"{m}: not published in {repository}, skipped" for m in missing]


@click.command(context_settings=dict(show_default=True, help_option_names=["-h", "--help"], max_content_width=100))
@click.option("--model", "-m", default="all", metavar="NAME[,NAME]|all",
              help="Training models (cyclegan = both directions), Triton model names, or all published ones.")
@click.option("--backends", "kinds", default=",".join(KINDS), callback=_kinds, metavar="KIND,...",
              help=f"Rows to compare, from {', '.join(KINDS)}.")
@click.option("--batch", "batches", default="1,8,64", callback=_ints, metavar="N,...",
              help="Batch sizes; those above a model's max batch are skipped (translators: 8).")
@click.option("--concurrency", "concurrencies", default="1,8", callback=_ints, metavar="N,...",
              help="Client threads sending requests at once.")
@click.option("--size", "sizes", default="256", callback=_ints, metavar="PX,...",
              help="Image sides for translators (cyclegan_a2b/b2a); samplers have a fixed output shape.")
@click.option("--steps", "steps", default="25", callback=_ints, metavar="N,...",
              help="Sampler steps per request for diffusion models (ddpm), each a scenario.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds measured per backend and scenario [default: 1.5]; with --soak, the soak length "
                   "[default: 300].")
@click.option("--rounds", default=3, type=click.IntRange(min=1),
              help="Interleaved rounds the duration is split into, so every backend sees the same noise.")
@click.option("--warmup", default=None, type=click.FloatRange(min=0),
              help="Warm-up seconds per backend and scenario, at least one request per client [default: 0.5]; "
                   "with --soak, seconds before the memory baseline [default: a fifth of --duration].")
@click.option("--repository", default=Path("model_repository"), type=click.Path(path_type=Path, file_okay=False),
              help="Published model repository (ganexport build).")
@click.option("--checkpoint", "checkpoints", multiple=True, callback=_checkpoints, metavar="MODEL=PATH",
              help="Checkpoint the eager row builds a training model from [default: the one ganexport build "
                   "takes]. Repeatable.")
@click.option("--triton-url", default=None, metavar="HOST:PORT",
              help="HTTP endpoint of a running Triton; default: start the bundled server on free ports.")
@click.option("--triton-grpc-url", default=None, metavar="HOST:PORT",
              help="gRPC endpoint of that server [default: the --triton-url port + 1].")
@click.option("--variant", "variants", multiple=True, callback=_variants, metavar="LABEL:KNOB=V,...",
              help="Extra rows with other serving knobs (Triton: dynamic_batching, max_queue_delay_us, instances; "
                   "Triton and onnxruntime: intra_op_threads, inter_op_threads, graph_optimization, "
                   "execution_mode, allow_spinning, arena_release_s, share_cores). Repeatable.")
@click.option("--perf-analyzer", is_flag=True,
              help="Add a perf_analyzer row beside each Triton row, in the same rounds (NVIDIA's load tool, "
                   "fetched from the tritonclient 2.51.0 wheel on first use).")
@click.option("--out", default=Path("bench-results"), type=click.Path(path_type=Path, file_okay=False),
              help="Results go to OUT/<hardware>/NAME.{json,md,png}.")
@click.option("--record", is_flag=True,
              help="Write into the project's recorded results (benchmarks/results/<hardware>/, what docs/benchmarks.md "
                   "cites) instead of --out, replacing a record of the same name.")
@click.option("--name", default=None, help="File name stem [default: bench, or soak-<target>].")
@click.option("--soak", is_flag=True, help="Soak instead: --concurrency clients for --duration seconds.")
@click.option("--target", default="triton-grpc", type=click.Choice(SOAK_TARGETS),
              help="--soak: the Triton server, or the Gradio demo's queue (through gradio_client).")
@click.option("--demo-url", default=None, help="--soak --target demo: a running demo; default: start one.")
def bench(model, kinds, batches, concurrencies, sizes, steps, duration, rounds, warmup, repository, checkpoints,
          triton_url, triton_grpc_url, variants, perf_analyzer, out, record, name, soak, target, demo_url):
    """Latency (p50/p90/p99) and throughput of every serving path, side by side, in one run.

    \b
    Examples:
      ganexport bench                                    # every published model, every backend
      ganexport bench --model cyclegan_a2b --size 256,512 --batch 1 --backends onnxruntime,triton-grpc
      ganexport bench --model ddpm --steps 10,25,50,100 --batch 1,64 --concurrency 1
      ganexport bench --model dcgan --backends triton-grpc --concurrency 8 \\
                      --variant nobatch:dynamic_batching=false --variant delay1ms:max_queue_delay_us=1000
      ganexport bench --model dcgan,cyclegan_a2b --batch 1 --concurrency 1 --backends triton-grpc --perf-analyzer
      ganexport bench --soak --duration 300 --concurrency 8 --target triton-grpc
    Backends run in short interleaved rounds, so their ratios hold on a noisy machine.
    Writes bench-results/<hardware>/bench.{json,md,png}; ratios are against eager. Only --record
    (as `make bench` does) touches the project's recorded results in benchmarks/results/.
    """
    from ganexport.benchmarks import hardware
    from ganexport.benchmarks.targets import BenchError
    from ganexport.serving.triton_server import ServerError

    command = shlex.join(["ganexport", "bench", *sys.argv[2:]]) if "bench" in sys.argv[1:2] else "ganexport bench"
    hw = hardware.describe()
    out_dir = (RECORDED if record else out) / hardware.slug(hw)
    if soak:
        from ganexport.benchmarks import soak as soak_mod

        names, _ = triton_names(model, repository)
        try:
            doc = soak_mod.run(repository, names, target=target, duration=duration or 300.0,
                               concurrency=max(concurrencies), warmup=warmup, triton_url=triton_url,
                               triton_grpc_url=triton_grpc_url, demo_url=demo_url, log=click.echo)
        except (soak_mod.SoakError, ServerError, BenchError) as e:
            raise click.ClickException(str(e)) from None
        doc.update(command=command, hardware={**hw, **doc.get("hardware", {})})
        from ganexport.benchmarks import report

        paths = soak_mod.write(out_dir, name or f"soak-{target}", report.portable(doc, repository))
        click.echo(f"{doc['verdict']}\nwrote {', '.join(map(str, paths))}")
        if doc["errors"]:
            sys.exit(1)
        return
    doc = run_bench(model, kinds, batches, concurrencies, sizes, steps, duration or 1.5, rounds,
                    0.5 if warmup is None else warmup, repository,
                    checkpoints, triton_url, triton_grpc_url, variants, perf_analyzer, hw, command)
    from ganexport.benchmarks import report

    paths = report.write(out_dir, name or "bench", report.portable(doc, repository))
    for f in doc["figures"]:
        click.echo(f"{'met' if f['met'] else 'MISSED'}: {f['figure']}: {f['value']} (target {f['target']})")
    click.echo(f"wrote {', '.join(map(str, paths))}")


def run_bench(model, kinds, batches, concurrencies, sizes, steps, duration, rounds, warmup, repository, checkpoints,
              triton_url, triton_grpc_url, variants, perf_analyzer, hw, command) -> dict:
    """Set up every row, measure, add ratios and figures: the document report.write() stores."""
    from ganexport.benchmarks import report, runner, work
    from ganexport.benchmarks.peak import Peaks
    from ganexport.benchmarks.perf_analyzer import PerfAnalyzerError
    from ganexport.benchmarks.targets import BenchError, Fleet
    from ganexport.serving.backends import BackendError, cuda_usable

    names, notes = triton_names(model, repository)
    if not names:
        raise click.UsageError(f"nothing to bench: no model published in {repository} (run ganexport build)")
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    click.echo(f"bench {', '.join(names)} on {', '.join(kinds)}"
               + (f" + variants {', '.join(v.label for v in variants)}" if variants else ""))
    try:
        with Fleet(repository, names, kinds, variants, checkpoints, triton_url, triton_grpc_url, perf_analyzer,
                   log=click.echo) as fleet:
            if fleet.eager:  # build every eager module now: a missing checkpoint stops the run, not each request
                for m in names:
                    fleet.eager.metadata(m)
            first = fleet.targets[0].slots(1)[0]
            signatures = {m: first.executor.submit(first.backend.metadata, m).result() for m in names}
            plan, skipped = runner.scenarios(signatures, batches, concurrencies, sizes, steps)
            for note in skipped:
                click.echo(f"skipped: {note}")
            if not plan:  # before anything is written: a run that measured nothing must not replace the last one
                raise click.UsageError("nothing to measure: every scenario was skipped (see above)")
            macs, work_notes = work.plan_macs(repository, signatures, plan)
            peaks = Peaks(gpu=cuda_usable())
            click.echo(f"peak: {'; '.join(peaks.describe().values())}: "
                       + ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in peaks.measure().items()))
            results = runner.measure(fleet.targets, signatures, plan, duration=duration, rounds=rounds,
                                     warmup=warmup, log=click.echo, peak=peaks.measure)
            if fleet.servers:
                hw = {**hw, "triton_server": fleet.servers[0].server_metadata().get("version")}
                if any(t.kind.startswith("triton") and t.variant is None for t in fleet.targets):
                    from ganexport.serving.instances import describe_plan

                    notes.append(f"Triton rows without a [variant]: as serve runs them, cores {describe_plan()}")
            sources = fleet.eager.sources if fleet.eager else {}
    except (BenchError, PerfAnalyzerError, BackendError) as e:
        raise click.ClickException(str(e)) from None
    precision = model_precisions(repository, names)
    for r in results:  # an fp16 copy (export/half.py) is measured against the fp16 peak; eager is PyTorch's fp32
        r["precision"] = precision.get(r["model"], "fp32") if r["kind"] in ("onnxruntime", "triton-http",
                                                                            "triton-grpc") else "fp32"
    results = report.add_paired(report.add_efficiency(report.add_ratios(results), macs))
    for line in report.efficiency_lines(results) + report.paired_lines(results):
        click.echo(line)
    return {"title": "ganexport bench", "started": started, "command": command, "hardware": hw,
            "peak": peaks.describe(),
            "settings": {"duration": duration, "rounds": rounds, "warmup": warmup, "backends": kinds,
                         "batches": batches, "concurrencies": concurrencies, "sizes": sizes, "steps": steps,
                         "variants": {v.label: v.knobs for v in variants}},
            "models": {m: {"signature": signatures[m].to_dict(), "eager_source": sources.get(m)} for m in names},
            "notes": notes + work_notes + [f"skipped: {s}" for s in skipped], "results": results,
            "figures": report.figures(results)}


def model_precisions(repository: Path, names: list[str]) -> dict[str, str]:
    """Each model's published precision: "fp16" for a copy `ganexport gpu-check` made (its parity.json says
    so), else "fp32"."""
    from ganexport.repository import RepositoryError, latest, read_parity

    found = {}
    for name in names:
        version = latest(repository, name) if repository.is_dir() else None
        try:
            found[name] = read_parity(version).get("precision", "fp32") if version is not None else "fp32"
        except RepositoryError:
            found[name] = "fp32"
    return found


if __name__ == "__main__":
    bench()
