"""The training layer's commands: ``train``, ``train-judge``, ``photos``, ``eval``, ``release``, ``gallery``.

ganexport/cli.py lists them and imports this module only when one of them runs or shows its help.
Torch is imported inside the commands (``eval --help`` reads the metric list, and so imports it).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from ganexport import catalog
from ganexport.cli_common import LATEST_RUN_HELP, MODEL_OR_ALL, UserError, checkpoint_rule, model_names
from ganexport.released import missing_checkpoint


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


@click.command()
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
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel on this many processes on this machine (torchrun; one per GPU, gloo on "
                   "CPU). The batch size is the global batch: each process takes batch_size / N rows.")
@click.option("--precision", type=click.Choice(catalog.PRECISIONS), default=catalog.PRECISIONS[0], show_default=True,
              help="The float type of the nets, data and random draws. float64 is several times slower; it makes "
                   "runs comparable value by value, e.g. --nproc 2 against one process, on any CPU. A resumed run "
                   "keeps its own.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(model, profile, dataset, data_dir, device, seed, steps, epochs, batch_size, lr, width, image_size,
          limit, out, resume, hp_overrides, nproc, precision, quiet):
    """Train one model; writes runs/<model>/<run-id>/ with a checkpoint, sample grids,
    loss curves and a training-health log.

    \b
    Examples:
      ganexport train --model dcgan --profile quick
      ganexport train --model cgan --steps 3000 --device cuda
      ganexport train --model cyclegan --data ~/horse2zebra --image-size 128
      ganexport train --model vae --hp kl_weight=0.5 --hp hidden=512
      ganexport train --model dcgan --nproc 2               # data-parallel, 2 processes
      torchrun --nproc-per-node 8 -m ganexport train --model cyclegan --profile full

    \b
    Data-parallel runs (--nproc N, or any torchrun launch) compute the step a
    single process computes with the same global batch: each process trains
    on its own batch_size / N rows of every batch, gradients and batch-norm
    statistics are averaged over the processes, and only rank 0 writes the
    run. So the same command trains the same model on any N, and --resume
    continues a run on a different N. N processes split each step's work;
    to give each GPU a full batch instead, grow the batch with N
    (--batch-size, e.g. 64 per GPU) and scale --lr with it.
    """
    from ganexport.training import checkpoint, data
    from ganexport.training.loop import TrainConfig
    from ganexport.training.loop import train as run_training

    overrides = parse_hp(catalog.get(model).hp(profile), hp_overrides)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        batch = batch_size or overrides.get("batch_size") or _run_batch_size(model, profile, resume)
        sys.exit(launch_data_parallel(nproc, device, batch))
    if "WORLD_SIZE" in os.environ and nproc not in (1, int(os.environ["WORLD_SIZE"])):
        raise UserError(f"--nproc {nproc}, but this was started as one of {os.environ['WORLD_SIZE']} processes")

    cfg = TrainConfig(model=model, profile=profile, dataset=dataset, data_dir=data_dir, device=device, seed=seed,
                      steps=steps, epochs=epochs, out=out, resume=resume, image_size=image_size, limit=limit,
                      hp={**overrides,
                          "batch_size": batch_size, "lr": lr, "width": width},
                      command=shlex.join(["ganexport", *sys.argv[1:]]), progress=not quiet, precision=precision)
    try:
        run_dir = run_training(cfg)
    except (data.DatasetError, checkpoint.CheckpointError) as e:
        raise UserError(str(e)) from None
    except RuntimeError as e:
        if "--device" in str(e):
            raise UserError(str(e)) from None
        raise
    if int(os.environ.get("RANK", "0")) != 0:
        return
    click.echo(f"run saved to {run_dir}")
    for name in ("checkpoint.safetensors", "samples.png", "loss_curve.png", "health.jsonl"):
        click.echo(f"  {run_dir / name}")


def _run_batch_size(model: str, profile: str, resume: str | None) -> int:
    """The batch size a run will use before ``--hp``: the resumed run's, else the profile's."""
    if not resume:
        return catalog.get(model).hp(profile)["batch_size"]
    from ganexport.training import checkpoint

    try:
        return checkpoint.read_meta(checkpoint.resolve(resume))["hparams"]["batch_size"]
    except checkpoint.CheckpointError as e:
        raise UserError(str(e)) from None


def launch_data_parallel(nproc: int, device: str, batch_size: int) -> int:
    """Run this same ``ganexport train`` command as ``nproc`` processes under torchrun on this machine;
    returns their exit code. Only rank 0's output is shown (it is the one that prints and writes), and
    torchrun's own report of a failed process is left out: the process's one-line error says it."""
    import re
    import subprocess

    from ganexport.training.parallel import World

    try:
        World(size=nproc).check_batch(batch_size)
    except ValueError as e:
        raise UserError(str(e)) from None
    if device != "cpu":
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device == "cuda" and gpus < nproc:
            raise UserError(f"--nproc {nproc} with --device cuda, but {gpus} CUDA device(s) are usable here")
    env = dict(os.environ)
    # torchrun would set 1 thread per process (with a warning); share the cores instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "--local-ranks-filter=0", "--module", "--", "ganexport", *sys.argv[1:]]
    agent_line = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ \S*torch/distributed/")
    failed = re.compile(r"failed \(exitcode: (-?\d+)\)")
    code = None
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        for line in proc.stderr:
            if agent_line.match(line):
                found = failed.search(line)
                code = int(found.group(1)) if found and code is None else code
                continue
            if code is None:  # after a failure, the rest is torchrun's traceback and summary
                sys.stderr.write(line)
                sys.stderr.flush()
    if proc.returncode and code is not None:
        return code if code > 0 else 1
    return proc.returncode


@click.command()
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


@click.command("train-judge")
@click.option("--dataset", default="fashion-mnist", type=click.Choice(
    [n for n, d in catalog.DATASETS.items() if d.num_classes or d.attribute_names]),
              help="A dataset labelled with classes, or with attributes (faces: the attribute judge).")
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
        if catalog.DATASETS[dataset].attribute_names:
            from ganexport.training.attribute_judge import train_attribute_judge

            _, acc = train_attribute_judge(dataset, device=resolve_device(device), epochs=epochs, out=out)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in acc["clean"].items())
            click.echo(f"attribute judge for {dataset}: held-out accuracy {shown}, saved to {out}")
            return
        _, acc = judge.train_judge(dataset, device=resolve_device(device), epochs=epochs, out=out)
    except data.DatasetError as e:
        raise UserError(str(e)) from None
    click.echo(f"judge for {dataset}: test accuracy {acc:.4f}, saved to {out}")


def _metrics_help() -> str:
    from ganexport.training.eval import METRICS  # torch: only when --help of eval is asked

    return "\n".join(f"  {m.name}: {m.doc}" for m in METRICS.values())


class _EvalCommand(click.Command):
    def format_epilog(self, ctx, formatter):
        formatter.write("\nMetrics (the name says the protocol):\n" + _metrics_help() + "\n")


@click.command("eval", cls=_EvalCommand)
@click.option("--model", "-m", required=True, type=MODEL_OR_ALL, help="Model to evaluate, or all.")
@click.option("--checkpoint", type=click.Path(exists=True), default=None, help=checkpoint_rule())
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Held-out data for a model trained on your own folder (DIR/testA + DIR/testB, or images). "
                   "Default: the folder the run was trained from, as its checkpoint records.")
@click.option("--metrics", default=None, help="Comma-separated metric names. Default: every one that applies.")
@click.option("--n", type=click.IntRange(min=10), default=None,
              help="Generated images per metric. Default: the protocol's count (10k for FID).")
@click.option("--seed", default=0, help="Seeds the latents.")
@click.option("--steps", type=click.IntRange(1, 1000), default=None,
              help="Diffusion models: DDIM steps of the sampler. Default: 50.")
@click.option("--guidance", type=click.FloatRange(0, 20), default=None,
              help="Diffusion models: classifier-free guidance scale. Default: the model's (its hyper-parameter).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def evaluate(model, checkpoint, latest_run, data_dir, metrics, n, seed, steps, guidance, device):
    """Measure a model's quality; results are appended as JSON lines beside the checkpoint.

    \b
    Examples:
      ganexport eval --model all                         # released weights, every metric
      ganexport eval --model cgan --metrics cgan_acc
      ganexport eval --model dcgan --checkpoint runs/dcgan/<run-id> --n 2000
      ganexport eval --model ddpm --steps 10             # a diffusion model at 10 DDIM steps
      ganexport eval --model ddpm --metrics cgan_acc --guidance 4 --n 2000
    """
    from ganexport.training import checkpoint as ckpt_io, data, eval as ev
    from ganexport.training.loop import resolve_device

    if (checkpoint or data_dir) and model == "all":
        raise UserError("--checkpoint and --data take one model, not all")
    names = [m.strip() for m in metrics.split(",")] if metrics else None
    for name in model_names(model):
        try:
            choice = ckpt_io.choose(name, checkpoint, latest_run=latest_run)
            if choice is None:
                raise UserError(f"{missing_checkpoint(name)} (train one: ganexport train --model {name})")
            click.echo(f"{name}: checkpoint {ckpt_io.shown(choice.path)} ({choice.why})")
            ev.evaluate(choice.path, names, n=n, seed=seed, device=resolve_device(device), data_dir=data_dir,
                        steps=steps, guidance=guidance, log=lambda msg: click.echo(f"  {msg}"))
        except (ckpt_io.CheckpointError, data.DatasetError, ValueError) as e:
            raise UserError(str(e)) from None
        click.echo(f"  -> {ckpt_io.shown(ev.results_path(choice.path))}")


@click.command("release")
@click.argument("run", type=click.Path(exists=True))
@click.option("--weights", type=click.Path(file_okay=False), default=None,
              help="Default: the released weights (`ganexport weights` says where; $GANEXPORT_WEIGHTS moves them).")
def release_cmd(run, weights):
    """Publish a training run as released weights: weights/<model>.safetensors in fp16 (under 15 MiB).

    \b
    Then measure it and regenerate its card and the gallery (docs/models.md):
      ganexport release runs/dcgan/<run-id>
      ganexport eval --model dcgan
      ganexport gallery
    """
    from ganexport.training import checkpoint as ckpt_io, release

    try:
        release.release(Path(run), Path(weights) if weights else None)
    except (ckpt_io.CheckpointError, ValueError) as e:
        raise UserError(str(e)) from None


@click.command("gallery")
@click.option("--weights", type=click.Path(file_okay=False), default=None,
              help="Default: the released weights (`ganexport weights` says where; $GANEXPORT_WEIGHTS moves them).")
@click.option("--page", "--readme", "page", type=click.Path(dir_okay=False), default=None,
              help="The page whose gallery section is rewritten. Default: docs/models.md beside weights/.")
def gallery_cmd(weights, page):
    """Regenerate the pictures and model cards in weights/ and the gallery and metrics table of docs/models.md.

    Pictures are drawn from the released weights with a fixed seed; metrics come
    from weights/<model>.eval.jsonl (run `ganexport eval --model all` first).
    """
    from ganexport.training import release

    try:
        release.gallery(Path(weights) if weights else None, Path(page) if page else None,
                        log=click.echo)
    except ValueError as e:
        raise UserError(str(e)) from None
