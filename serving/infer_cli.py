"""``ganexport infer``: sample a grid, translate an image, run a diffusion model's sampler, encode an image to its
latent or edit its attributes, through any backend of the Backend protocol.

ganexport/cli.py lists it and imports this module only when it runs or shows its help; numpy and
the backends are imported inside the command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from click.core import ParameterSource

from ganexport import catalog
from ganexport.cli_common import UserError
from ganexport.serving.auth import TLS_CA_ENV, TOKEN_ENV

TRITON_MODELS = catalog.triton_models(tuple(catalog.RUNTIME_SUFFIX))
# What a diffusion model's sampler runs with unless told: DDIM at 50 steps, the guidance its spec trains for.
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = next((s.hp("full").get("guidance", 1.0) for s in catalog.MODELS.values() if s.kind == "diffuse"),
                        1.0)
SAMPLER_OPTIONS = ("--steps", "--guidance", "--eta", "--trajectory")
# A long walk (up to 1000 steps of the denoiser) on CPU takes minutes, not the 30 s a single step gets.
DIFFUSION_TIMEOUT_S = 600.0


@click.command()
@click.option("--model", "-m", required=True, type=click.Choice(list(TRITON_MODELS)),
              help="A Triton model name (see `ganexport models`).")
@click.option("--backend", "-b", default="onnxruntime",
              type=click.Choice(["onnxruntime", "torchscript", "triton-http", "triton-grpc"]),
              help="In-process runtime, or a running Triton server.")
@click.option("--url", default=None,
              help="Triton endpoint [default: 127.0.0.1:8000 (http) / 127.0.0.1:8001 (grpc), or the port in "
                   "$GANEXPORT_HTTP_PORT / $GANEXPORT_GRPC_PORT, as `ganexport serve` takes them].")
@click.option("--token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="Triton backends: the token a front door started with --token-file wants. Prefer the "
                   "environment variable: a command line is visible to other users of the machine.")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True), default=None, envvar=TLS_CA_ENV,
              show_envvar=True, help="Triton backends: speak TLS, trusting the server's certificate if this CA "
                                     "(PEM) signed it.")
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False),
              help="Where in-process backends find published models.")
@click.option("--seed", default=0, type=int, help="Seeds the latent vectors (the initial noise, for diffusion).")
@click.option("--n", "--count", "count", default=16, type=click.IntRange(min=1),
              help="How many samples (samplers and diffusion models).")
@click.option("--label", type=int, default=None,
              help="Class index for conditional models [default: every class in turn; for a diffusion model, "
                   "no class].")
@click.option("--steps", type=int, default=None, show_default=str(DEFAULT_STEPS),
              help="Diffusion models: sampler steps (the signature's range, 1..1000 for ddpm).")
@click.option("--guidance", type=float, default=None,
              show_default=f"{DEFAULT_GUIDANCE}, or the model's own where its signature says one (1 for an "
                           "imported pipeline)",
              help="Diffusion models: classifier-free guidance scale (1 = plain conditional, 0 = unconditional).")
@click.option("--eta", type=float, default=None, show_default="0.0",
              help="Diffusion models: 0 = deterministic DDIM, 1 = ancestral DDPM noise.")
@click.option("--trajectory", is_flag=True,
              help="Diffusion models: one row per sample, its image after evenly spaced steps, the last final.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help="Image to translate (translators): JPEG/PNG/WebP..., any size within the model's limits; to "
                   "encode or edit (encoders, edit models): cropped to a square and resized to the model's size.")
@click.option("--edit", "edits", multiple=True, metavar="ATTRIBUTE=STRENGTH",
              help="Edit models: an attribute and its strength, repeatable (e.g. --edit smiling=1 --edit "
                   "glasses=-1); the attributes not named stay 0.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Image to write, its format by the extension (.png: lossless) [default: MODEL.png]; an encoder "
                   "writes its latents as JSON [default: MODEL.json].")
def infer(model, backend, url, token, tls_ca, repo, seed, count, label, steps, guidance, eta, trajectory, input_path,
          edits, output):
    """Sample a grid of images, translate an image file, or run a diffusion model's sampler, through any backend.

    \b
    Examples:
      ganexport infer --model dcgan --n 64 --output grid.png
      ganexport infer --model cgan --label 7 --backend triton-grpc
      ganexport infer --model cyclegan_a2b --input photo.jpg --output sketch.png
      ganexport infer --model ddpm --label 7 --steps 25 --guidance 2 --count 16 --output grid.png
      ganexport infer --model ddpm --label 3 --steps 50 --count 4 --trajectory --output walk.png
      ganexport infer --model vae_faces_encoder --input face.png --output latent.json
      ganexport infer --model vae_faces_edit --input face.png --edit smiling=1 --output smiling.png
      GANEXPORT_TOKEN=... ganexport infer --model dcgan --backend triton-grpc --url gpu-box:8001 --tls-ca ca.pem
    """
    from ganexport import images
    from ganexport.serving.backends import BackendError, connect
    from ganexport.serving.validation import InvalidInput

    spec, kind = TRITON_MODELS[model][0], TRITON_MODELS[model][1].kind
    given = [o for o, v in zip(SAMPLER_OPTIONS, (steps, guidance, eta, trajectory or None)) if v is not None]
    if given and kind != "diffuse":
        raise click.UsageError(f"{', '.join(given)}: for diffusion models only; {model} is a {kind} model")
    if edits and kind != "edit":
        raise click.UsageError(f"--edit: for edit models only; {model} is a {kind} model")
    # an option the model has no use for is a mistake to say, not to drop: the user expects it to do something
    drawn = kind in ("sample", "diffuse")
    if label is not None and not (drawn and spec.conditional):
        raise click.UsageError(f"--label: for class-conditional samplers and diffusion models; {model} takes none")
    if input_path and drawn:
        raise click.UsageError(f"--input: for models that take an image; {model} is a {kind} model, it draws its "
                               "images from noise")
    if not drawn and click.get_current_context().get_parameter_source("count") != ParameterSource.DEFAULT:
        raise click.UsageError(f"--n: for samplers and diffusion models; {model} answers one image per input")
    output = Path(output or f"{model}.{'json' if kind == 'encode' else 'png'}")
    if kind != "encode":  # before the work, not after it
        try:
            images.check_output(output)
        except images.ImageError as e:
            raise UserError(str(e)) from None
    if url is None and backend.startswith("triton-"):
        port = os.environ.get(f"GANEXPORT_{backend.removeprefix('triton-').upper()}_PORT")
        url = f"127.0.0.1:{port}" if port else None
    timeout = DIFFUSION_TIMEOUT_S if kind == "diffuse" else 30.0
    try:
        with connect(backend, repository=repo, url=url, timeout=timeout, token=token, tls_ca=tls_ca) as b:
            sig = b.metadata(model)
            if sig.kind == "translate":
                what, seconds = _translate(b, model, sig, input_path, output)
            elif sig.kind in ("encode", "edit"):
                what, seconds = _latent(b, model, sig, input_path, edits, output)
            elif sig.kind == "diffuse":
                own = (sig.diffusion or {}).get("guidance", DEFAULT_GUIDANCE)  # an imported pipeline's: 1
                settings = (DEFAULT_STEPS if steps is None else steps, own if guidance is None else guidance,
                            eta or 0.0)
                what, seconds = _diffuse(b, model, sig, seed, count, label, settings, trajectory, output)
            else:
                what, seconds = _sample(b, model, sig, seed, count, label, output)
    except (images.ImageError, InvalidInput, BackendError) as e:
        raise UserError(str(e)) from None
    click.echo(f"{model} via {backend}: {what} in {seconds * 1000:.0f} ms (one request); "
               f"wrote {output}")


def _tell(notes: list[str]) -> None:
    """What was done to the input image that its owner would not guess (first frame only, cropped, resized)."""
    for note in notes:
        click.echo(f"note: {note}", err=True)


def _translate(b, model, sig, input_path, output) -> tuple[str, float]:
    from ganexport import images

    if not input_path:
        raise click.UsageError(f"{model} translates images: give --input IMAGE")
    channels = sig.inputs[0].shape[-1]
    notes: list[str] = []
    image = images.read_image(input_path, channels, sig.min_image_side, sig.max_image_side, notes=notes)
    _tell(notes)
    t0 = time.perf_counter()
    result = b.translate(model, image[None])[0]
    seconds = time.perf_counter() - t0
    images.save_image(result, output)
    return f"{image.shape[1]}x{image.shape[0]} image -> {result.shape[1]}x{result.shape[0]}", seconds


def _latent(b, model, sig, input_path, edits, output) -> tuple[str, float]:
    """An encoder's latent of the image (written as JSON), or an edit model's edited image (PNG)."""
    import json

    from ganexport import images

    if not input_path:
        raise click.UsageError(f"{model} takes an image: give --input IMAGE")
    image, notes = images.read_image_at(input_path, sig.inputs[0].shape)
    _tell(notes)
    t0 = time.perf_counter()
    if sig.kind == "encode":
        latent = b.encode(model, image[None])[0]
        seconds = time.perf_counter() - t0
        output.write_text(json.dumps({"model": model, "input": Path(input_path).name,
                                      "latent": [round(float(v), 6) for v in latent]}) + "\n")
        return f"{Path(input_path).name} -> a {latent.shape[0]}-D latent", seconds
    strength = {}
    for item in edits:
        name, sep, value = item.partition("=")
        try:
            strength[name] = float(value) if sep else float("nan")
        except ValueError:
            strength[name] = float("nan")
        if strength[name] != strength[name]:
            raise click.BadParameter(f"{item!r}: expected ATTRIBUTE=STRENGTH, a number", param_hint="--edit")
    edited = b.edit(model, image[None], strength)[0]
    seconds = time.perf_counter() - t0
    images.save_image(edited, output)
    shown = ", ".join(f"{k} {v:+g}" for k, v in strength.items()) or "nothing (the reconstruction)"
    return f"{Path(input_path).name} edited: {shown}", seconds


def _sample(b, model, sig, seed, count, label, output) -> tuple[str, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((count, *sig.inputs[0].shape)).astype(np.float32)
    labels = None
    if len(sig.inputs) > 1:
        k = int(sig.inputs[1].high) + 1
        labels = np.full(count, label, np.int64) if label is not None else np.arange(count) % k
    t0 = time.perf_counter()
    out = b.sample(model, z, labels)
    seconds = time.perf_counter() - t0
    grid = _save_grid(out, int(np.ceil(np.sqrt(count))), output)
    return f"{count} samples of {out.shape[2]}x{out.shape[1]} -> a {grid.width}x{grid.height} grid", seconds


def _diffuse(b, model, sig, seed, count, label, settings, trajectory, output) -> tuple[str, float]:
    """``count`` images from seeded noise, one label for all (None: "no class"); with ``trajectory``, one row
    of snapshots per image."""
    import numpy as np

    steps, guidance, eta = settings
    noise = np.random.default_rng(seed).standard_normal((count, *sig.inputs[0].shape)).astype(np.float32)
    labels = None if label is None else np.full(count, label, np.int64)
    t0 = time.perf_counter()
    out = b.diffuse(model, noise, labels, steps, guidance=guidance, eta=eta, trajectory=trajectory)
    seconds = time.perf_counter() - t0
    how = f"{steps} steps, guidance {guidance:g}, eta {eta:g}"
    if trajectory:
        frames = out[1]
        grid = _save_grid(frames.reshape(-1, *frames.shape[2:]), frames.shape[1], output)
        return (f"{count} trajectories of {frames.shape[1]} frames ({how}) -> a {grid.width}x{grid.height} grid",
                seconds)
    grid = _save_grid(out, int(np.ceil(np.sqrt(count))), output)
    return f"{count} samples of {out.shape[2]}x{out.shape[1]} ({how}) -> a {grid.width}x{grid.height} grid", seconds


def _save_grid(out, nrow: int, output: Path):
    from ganexport import images

    grid = images.grid_image(out, nrow, scale=images.upscale_for_viewing(out.shape[1]))
    images.save_picture(grid, output)
    return grid
