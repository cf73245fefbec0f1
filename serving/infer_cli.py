"""``ganexport infer``: sample a grid or translate an image through any backend of the Backend protocol.

ganexport/cli.py lists it and imports this module only when it runs or shows its help; numpy and
the backends are imported inside the command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ganexport import catalog
from ganexport.cli_common import UserError


@click.command()
@click.option("--model", "-m", required=True,
              type=click.Choice(list(catalog.triton_models(tuple(catalog.RUNTIME_SUFFIX)))),
              help="A Triton model name (see `ganexport models`).")
@click.option("--backend", "-b", default="onnxruntime",
              type=click.Choice(["onnxruntime", "torchscript", "triton-http", "triton-grpc"]),
              help="In-process runtime, or a running Triton server.")
@click.option("--url", default=None,
              help="Triton endpoint [default: 127.0.0.1:8000 (http) / 127.0.0.1:8001 (grpc), or the port in "
                   "$GANEXPORT_HTTP_PORT / $GANEXPORT_GRPC_PORT, as `ganexport serve` takes them].")
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
    if url is None and backend.startswith("triton-"):
        port = os.environ.get(f"GANEXPORT_{backend.removeprefix('triton-').upper()}_PORT")
        url = f"127.0.0.1:{port}" if port else None
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
