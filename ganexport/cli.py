"""The ``ganexport`` command line.

    ganexport models                                    # what the catalog holds
    ganexport train --model dcgan --profile quick       # train one model (runs/dcgan/<run-id>/)
    ganexport train --model cyclegan --data DIR         # your own DIR/trainA + DIR/trainB
    ganexport train --model cgan --resume runs/cgan/<run-id>

Heavy imports (torch) happen inside commands, so ``--help`` is instant and
serving commands never load the training stack.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from ganexport import catalog
from ganexport.benchmarks.bench_cli import bench
from ganexport.demo.demo_cli import demo
from ganexport.serving.serve_cli import serve

CONTEXT = dict(help_option_names=["-h", "--help"], show_default=True, max_content_width=100)


class UserError(click.ClickException):
    """A one-line error for the user (bad data, bad checkpoint): exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="ganexport")
def cli():
    """Train compact generative models, export them to ONNX and TorchScript, verify parity,
    and serve them through Triton and ONNX Runtime.

    Start with `ganexport models` to see the catalog, then `ganexport train --model NAME`.
    """


@cli.command()
@click.option("--hparams", is_flag=True, help="Also list each profile's hyper-parameters (what `train --hp` sets).")
def models(hparams):
    """List the catalog: training models and the Triton models each publishes, with signatures."""
    for spec in catalog.MODELS.values():
        click.echo(f"{spec.name}  ({spec.family}, default data: {spec.dataset})")
        click.echo(f"    {spec.description}")
        if hparams:
            for profile in catalog.PROFILES:
                click.echo(f"    {profile}: " + " ".join(f"{k}={v}" for k, v in spec.hp(profile).items()))
        for sig in spec.signatures():
            ins = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.inputs)
            outs = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.outputs)
            click.echo(f"    -> {sig.name}: {ins} -> {outs}  (max batch {sig.max_batch_size})")


def parse_hp(profile_hp: dict, items: tuple[str, ...]) -> dict:
    """``("kl_weight=0.5", ...)`` -> ``{"kl_weight": 0.5}``, typed like the profile's value; unknown keys refused.

    A typo must not train for an hour with the default silently in force.
    """
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in profile_hp:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(profile_hp)}",
                                     param_hint="--hp")
        kind = type(profile_hp[key])
        try:
            out[key] = {bool: lambda t: {"true": True, "false": False}[t.lower()]}.get(kind, kind)(text)
        except (KeyError, ValueError):
            raise click.BadParameter(f"{item!r}: {key} takes a {kind.__name__}", param_hint="--hp") from None
    return out


@cli.command()
@click.option("--model", "-m", required=True, type=click.Choice(list(catalog.MODELS)), help="Which model to train.")
@click.option("--profile", "-p", default="quick", type=click.Choice(catalog.PROFILES),
              help="smoke: seconds (tests); quick: minutes on 2 CPU cores; full: the released recipe (GPU).")
@click.option("--dataset", type=click.Choice(list(catalog.DATASETS)), default=None,
              help="Training data. Default: the model's (see `ganexport models`), or detected from --data.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Your own data: Fashion-MNIST/MNIST IDX files, an image folder, or DIR/trainA + DIR/trainB.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), help="auto: CUDA if usable.")
@click.option("--seed", default=0, type=int, help="Seeds nets, batches and data crops.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Generator updates (overrides the profile).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Passes over the data, converted to steps (overrides the profile).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Overrides the profile.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Overrides the profile.")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Base channel count of the nets.")
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="Side of training images for image folders and photo2sketch crops.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most this many training images.")
@click.option("--out", default="runs", type=click.Path(file_okay=False), help="Runs go to OUT/<model>/<run-id>/.")
@click.option("--resume", type=click.Path(exists=True), default=None,
              help="Continue a run (its directory or checkpoint.safetensors).")
@click.option("--hp", "hp_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any hyper-parameter of the profile (repeatable), e.g. --hp kl_weight=0.5; "
                   "`ganexport models --hparams` lists them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(model, profile, dataset, data_dir, device, seed, steps, epochs, batch_size, lr, width, image_size,
          limit, out, resume, hp_overrides, quiet):
    """Train one model; writes runs/<model>/<run-id>/ with a checkpoint, sample grids,
    loss curves and a training-health log.

    \b
    Examples:
      ganexport train --model dcgan --profile quick
      ganexport train --model cgan --steps 3000 --device cuda
      ganexport train --model cyclegan --data ~/horse2zebra --image-size 128
      ganexport train --model vae --hp kl_weight=0.5 --hp hidden=512
    """
    from ganexport.training import checkpoint, data
    from ganexport.training.loop import TrainConfig
    from ganexport.training.loop import train as run_training

    cfg = TrainConfig(model=model, profile=profile, dataset=dataset, data_dir=data_dir, device=device, seed=seed,
                      steps=steps, epochs=epochs, out=out, resume=resume, image_size=image_size, limit=limit,
                      hp={**parse_hp(catalog.get(model).hp(profile), hp_overrides),
                          "batch_size": batch_size, "lr": lr, "width": width},
                      command=shlex.join(["ganexport", *sys.argv[1:]]), progress=not quiet)
    try:
        run_dir = run_training(cfg)
    except (data.DatasetError, checkpoint.CheckpointError) as e:
        raise UserError(str(e)) from None
    except RuntimeError as e:
        if "--device" in str(e):
            raise UserError(str(e)) from None
        raise
    click.echo(f"run saved to {run_dir}")
    for name in ("checkpoint.safetensors", "samples.png", "loss_curve.png", "health.jsonl"):
        click.echo(f"  {run_dir / name}")


@cli.command()
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per installed photo (name, package, licence, credit, split, size) to this TSV.")
def photos(manifest):
    """The real photographs photo2sketch trains on: how many each package gives, which are missing.

    \b
    Examples:
      ganexport photos                                   # counts per package, train / held-out split
      ganexport photos --manifest photos.tsv             # every photo with its source, licence and size
    """
    from ganexport.training import photos as collection

    have, missing = collection.available()
    by_package: dict[str, list[int]] = {}
    for p in have:
        by_package.setdefault(p.package, [0, 0])[p.split == "test"] += 1
    for package, (train, test) in sorted(by_package.items()):
        click.echo(f"{package:32s} {train + test:4d} photos ({test} held out)")
    for package, n in sorted(missing.items()):
        click.echo(f"{package:32s} {n:4d} listed, not installed (make setup unpacks it)")
    held_out = sum(p.split == "test" for p in have)
    click.echo(f"{len(have)} photos installed: {len(have) - held_out} for training, {held_out} held out "
               f"(by photo); list: {collection.SOURCES_FILE.name}")
    if manifest:
        collection.write_manifest(collection.manifest(have), manifest)
        click.echo(f"manifest: {len(have)} photos -> {manifest}")


@cli.command("train-judge")
@click.option("--dataset", default="fashion-mnist", type=click.Choice(
    [n for n, d in catalog.DATASETS.items() if d.num_classes]), help="A labelled dataset.")
@click.option("--epochs", default=3, type=click.IntRange(min=1))
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Default: the user cache; weights/judge_<dataset>.safetensors to ship it.")
def train_judge(dataset, epochs, device, out):
    """Train the small classifier that judges samples (class histograms, later FID features)."""
    from ganexport.training import data, judge
    from ganexport.training.loop import resolve_device

    out = Path(out) if out else judge.cache_dir() / f"judge_{dataset}.safetensors"
    try:
        _, acc = judge.train_judge(dataset, device=resolve_device(device), epochs=epochs, out=out)
    except data.DatasetError as e:
        raise UserError(str(e)) from None
    click.echo(f"judge for {dataset}: test accuracy {acc:.4f}, saved to {out}")


def _checkpoint_rule() -> str:
    # what training.checkpoint.choose does, stated here so that --help does not import torch
    return ("A checkpoint file or a run folder (runs/<model>/<run-id>). Default: weights/<model>.safetensors "
            "(the released weights), else the newest runs/<model>/<run-id>.")


LATEST_RUN_HELP = "Take the newest runs/<model>/<run-id> even when released weights exist."


def _model_names(model: str) -> list[str]:
    return list(catalog.MODELS) if model == "all" else [model]


MODEL_OR_ALL = click.Choice([*catalog.MODELS, "all"])


@cli.command()
@click.option("--model", "-m", required=True, type=MODEL_OR_ALL, help="Training model to build, or all.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=True), default=None,
              help=_checkpoint_rule() + " With neither, build trains the quick profile first.")
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--flavor", default="embedded", type=click.Choice(["embedded", "native"]),
              help="embedded: Python backend (the bundled server); native: onnxruntime_onnx / pytorch_libtorch.")
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False),
              help="Triton model repository to publish into.")
@click.option("--gpu/--cpu", default=False, help="Instance groups on GPU (KIND_GPU) or CPU.")
@click.option("--tensorrt", is_flag=True,
              help="Native flavour on GPU: let Triton's onnxruntime backend run the ONNX models through TensorRT.")
@click.option("--keep", default=3, type=click.IntRange(min=1), help="How many versions of each model to keep.")
def build(model, checkpoint, latest_run, flavor, repo, gpu, tensorrt, keep):
    """Export to ONNX and TorchScript, prove parity with PyTorch, publish into the Triton repository.

    \b
    Examples:
      ganexport build --model cyclegan
      ganexport build --model all --flavor native --repository /models
      ganexport build --model cyclegan --flavor native --gpu --tensorrt --repository /models
    Nothing is published unless every exported model passes parity; a failed build
    exits non-zero, names the model, backend and error, and leaves the repository as it was.
    """
    from ganexport.export import build as pipeline
    from ganexport.export import onnx_export, parity
    from ganexport.training import checkpoint as ckpt_mod

    if checkpoint and model == "all":
        raise click.UsageError("--checkpoint goes with one --model, not all")
    if tensorrt and (flavor, gpu) != ("native", True):
        raise click.UsageError("--tensorrt needs --flavor native --gpu (TensorRT runs in NVIDIA's Triton "
                               "containers, on GPU instances; the bundled server has no onnxruntime backend)")
    for name in _model_names(model):
        try:
            pipeline.build(name, checkpoint_path=checkpoint, latest_run=latest_run, repo=Path(repo), flavor=flavor,
                           gpu=gpu,
                           tensorrt=tensorrt, keep=keep, log=click.echo)
        except (parity.ParityError, onnx_export.ExportError, ckpt_mod.CheckpointError) as e:
            raise UserError(f"build of {name} refused, nothing published: {e}") from None


@cli.command()
@click.option("--model", "-m", required=True, type=MODEL_OR_ALL)
@click.option("--checkpoint", type=click.Path(exists=True), default=None,
              help="A checkpoint file or a run folder. Default: the checkpoint the repository was built from "
                   "(found by the SHA-256 in its parity.json).")
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False))
def verify(model, checkpoint, latest_run, repo):
    """Re-check what is published against the checkpoint: file hashes, then outputs vs PyTorch.

    \b
    Examples:
      ganexport verify --model cyclegan
      ganexport verify --model all --repository /models
    """
    from ganexport.export import build as pipeline
    from ganexport.training import checkpoint as ckpt_mod

    for name in _model_names(model):
        try:
            pipeline.verify(name, checkpoint_path=checkpoint, latest_run=latest_run, repo=Path(repo), log=click.echo)
        except (pipeline.VerifyError, ckpt_mod.CheckpointError) as e:
            raise UserError(str(e)) from None


@cli.command("export")
@click.option("--model", "-m", required=True, type=MODEL_OR_ALL)
@click.option("--checkpoint", type=click.Path(exists=True), default=None, help=_checkpoint_rule())
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--out", default="exported", type=click.Path(file_okay=False),
              help="Writes OUT/<triton-name>/model.onnx, model.pt, parity.json.")
def export_cmd(model, checkpoint, latest_run, out):
    """Export ONNX and TorchScript files with their parity report, without publishing."""
    from ganexport.export import build as pipeline
    from ganexport.export import onnx_export, parity
    from ganexport.training import checkpoint as ckpt_mod

    for name in _model_names(model):
        try:
            for d in pipeline.export_files(name, Path(out), checkpoint_path=checkpoint, latest_run=latest_run,
                                           log=click.echo):
                click.echo(f"wrote {d}")
        except (parity.ParityError, onnx_export.ExportError, ckpt_mod.CheckpointError) as e:
            raise UserError(str(e)) from None


@cli.command()
@click.option("--model", "-m", required=True,
              type=click.Choice(list(catalog.triton_models(tuple(catalog.RUNTIME_SUFFIX)))),
              help="A Triton model name (see `ganexport models`).")
@click.option("--backend", "-b", default="onnxruntime",
              type=click.Choice(["onnxruntime", "torchscript", "triton-http", "triton-grpc"]),
              help="In-process runtime, or a running Triton server.")
@click.option("--url", default=None, help="Triton endpoint [default: 127.0.0.1:8000 (http) / 127.0.0.1:8001 (grpc)].")
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False),
              help="Where in-process backends find published models.")
@click.option("--seed", default=0, type=int, help="Seeds the latent vectors.")
@click.option("--n", "count", default=16, type=click.IntRange(min=1), help="How many samples (samplers).")
@click.option("--label", type=int, default=None,
              help="Class index for conditional models [default: every class in turn].")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help="Image to translate (translators): JPEG/PNG/WebP..., any size within the model's limits.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="PNG to write [default: MODEL.png].")
def infer(model, backend, url, repo, seed, count, label, input_path, output):
    """Sample a grid of images, or translate an image file, through any backend.

    \b
    Examples:
      ganexport infer --model dcgan --n 64 --output grid.png
      ganexport infer --model cgan --label 7 --backend triton-grpc
      ganexport infer --model cyclegan_a2b --input photo.jpg --output sketch.png
    """
    import numpy as np

    from ganexport import images
    from ganexport.serving.backends import BackendError, connect
    from ganexport.serving.validation import InvalidInput

    output = Path(output or f"{model}.png")
    try:
        with connect(backend, repository=repo, url=url) as b:
            sig = b.metadata(model)
            if sig.kind == "translate":
                if not input_path:
                    raise click.UsageError(f"{model} translates images: give --input IMAGE")
                channels = sig.inputs[0].shape[-1]
                image = images.read_image(input_path, channels, sig.min_image_side, sig.max_image_side)
                t0 = time.perf_counter()
                result = b.translate(model, image[None])[0]
                seconds = time.perf_counter() - t0
                images.save_image(result, output)
                what = f"{image.shape[1]}x{image.shape[0]} image -> {result.shape[1]}x{result.shape[0]}"
            else:
                rng = np.random.default_rng(seed)
                z = rng.standard_normal((count, *sig.inputs[0].shape)).astype(np.float32)
                labels = None
                if len(sig.inputs) > 1:
                    spec = sig.inputs[1]
                    k = int(spec.high) + 1
                    labels = np.full(count, label, np.int64) if label is not None else np.arange(count) % k
                t0 = time.perf_counter()
                out = b.sample(model, z, labels)
                seconds = time.perf_counter() - t0
                nrow = int(np.ceil(np.sqrt(count)))
                grid = images.grid_image(out, nrow, scale=images.upscale_for_viewing(out.shape[1]))
                grid.save(output)
                what = f"{count} samples of {out.shape[2]}x{out.shape[1]} -> a {grid.width}x{grid.height} grid"
    except (images.ImageError, InvalidInput, BackendError) as e:
        raise UserError(str(e)) from None
    click.echo(f"{model} via {backend}: {what} in {seconds * 1000:.0f} ms (one request); "
               f"wrote {output}")


def _metrics_help() -> str:
    from ganexport.training.eval import METRICS  # torch: only when --help of eval is asked

    return "\n".join(f"  {m.name}: {m.doc}" for m in METRICS.values())


class _EvalCommand(click.Command):
    def format_epilog(self, ctx, formatter):
        formatter.write("\nMetrics (the name says the protocol):\n" + _metrics_help() + "\n")


@cli.command("eval", cls=_EvalCommand)
@click.option("--model", "-m", required=True, type=MODEL_OR_ALL, help="Model to evaluate, or all.")
@click.option("--checkpoint", type=click.Path(exists=True), default=None, help=_checkpoint_rule())
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Held-out data for a model trained on your own folder (DIR/testA + DIR/testB, or images). "
                   "Default: the folder the run was trained from, as its checkpoint records.")
@click.option("--metrics", default=None, help="Comma-separated metric names. Default: every one that applies.")
@click.option("--n", type=click.IntRange(min=10), default=None,
              help="Generated images per metric. Default: the protocol's count (10k for FID).")
@click.option("--seed", default=0, help="Seeds the latents.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def evaluate(model, checkpoint, latest_run, data_dir, metrics, n, seed, device):
    """Measure a model's quality; results are appended as JSON lines beside the checkpoint.

    \b
    Examples:
      ganexport eval --model all                         # released weights, every metric
      ganexport eval --model cgan --metrics cgan_acc
      ganexport eval --model dcgan --checkpoint runs/dcgan/<run-id> --n 2000
    """
    from ganexport.training import checkpoint as ckpt_io, data, eval as ev
    from ganexport.training.loop import resolve_device

    if (checkpoint or data_dir) and model == "all":
        raise UserError("--checkpoint and --data take one model, not all")
    names = [m.strip() for m in metrics.split(",")] if metrics else None
    for name in _model_names(model):
        try:
            choice = ckpt_io.choose(name, checkpoint, latest_run=latest_run)
            if choice is None:
                raise UserError(f"no checkpoint for {name}: no weights/{name}.safetensors and no run in runs/{name}/")
            click.echo(f"{name}: checkpoint {ckpt_io.shown(choice.path)} ({choice.why})")
            ev.evaluate(choice.path, names, n=n, seed=seed, device=resolve_device(device), data_dir=data_dir,
                        log=lambda msg: click.echo(f"  {msg}"))
        except (ckpt_io.CheckpointError, data.DatasetError, ValueError) as e:
            raise UserError(str(e)) from None
        click.echo(f"  -> {ckpt_io.shown(ev.results_path(choice.path))}")


@cli.command("release")
@click.argument("run", type=click.Path(exists=True))
@click.option("--weights", type=click.Path(file_okay=False), default=None, help="Default: the package's weights/.")
def release_cmd(run, weights):
    """Publish a training run as released weights: weights/<model>.safetensors in fp16 (under 15 MB).

    \b
    Then measure it and regenerate its card and the README gallery:
      ganexport release runs/dcgan/<run-id>
      ganexport eval --model dcgan
      ganexport gallery
    """
    from ganexport.training import checkpoint as ckpt_io, release

    try:
        release.release(Path(run), Path(weights) if weights else release.WEIGHTS_DIR)
    except (ckpt_io.CheckpointError, ValueError) as e:
        raise UserError(str(e)) from None


@cli.command("gallery")
@click.option("--weights", type=click.Path(file_okay=False), default=None, help="Default: the package's weights/.")
@click.option("--readme", type=click.Path(dir_okay=False), default=None, help="Default: README.md beside weights/.")
def gallery_cmd(weights, readme):
    """Regenerate the pictures and model cards in weights/ and the README's gallery and metrics table.

    Pictures are drawn from the released weights with a fixed seed; metrics come
    from weights/<model>.eval.jsonl (run `ganexport eval --model all` first).
    """
    from ganexport.training import release

    try:
        release.gallery(Path(weights) if weights else release.WEIGHTS_DIR, Path(readme) if readme else None,
                        log=click.echo)
    except ValueError as e:
        raise UserError(str(e)) from None


cli.add_command(serve)
cli.add_command(demo)
cli.add_command(bench)


def main(argv=None):
    cli.main(args=argv, prog_name="ganexport")


if __name__ == "__main__":
    main()
