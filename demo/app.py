"""The Gradio demo: one tab per kind of published model; sample, ask for a class (a GAN and a diffusion
model side by side), walk a 2-D latent space, watch a diffusion model denoise, translate a photo.

The tabs and their models come from what the backend serves and from each
model's signature (tabs.py), the event handlers are plain methods (handlers.py);
this module only lays them out and wires them. Every image comes through the
one Backend API: by default Triton over gRPC, with in-process ONNX Runtime as
the fallback while Triton cannot be reached (said on the page; Triton is tried
again on the next request). A failed request raises ``gr.Error``, so the page
shows it and API clients get an error, not a success carrying an error text.
Uploads are deleted once read, and Gradio deletes every upload and result it
cached when the demo stops (``delete_cache``). Nothing here imports torch.

    >>> from ganexport.demo.app import build_app                          # doctest: +SKIP
    >>> build_app(backend_kind="onnxruntime", repository="model_repository").launch()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
import os
import re
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

# Before gradio is imported: no analytics calls, temp files under the system temp dir.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(tempfile.gettempdir()) / "ganexport-gradio"))

import gradio as gr  # noqa: E402

from ganexport import catalog  # noqa: E402
from ganexport.demo.arithmetic import MAX_MORPH  # noqa: E402
from ganexport.demo.backend import DemoError, FallbackBackend, one_line  # noqa: E402
from ganexport.demo.handlers import (DEFAULT_STEPS, MAX_COUNT, MAX_DIFFUSION_COUNT, MAX_FRAMES, MAX_GRID,  # noqa: E402
                                     MAX_ROWS, NOTHING_BESIDE, Handlers, class_defaults, sampler_limits)
from ganexport.demo.tabs import NO_CLASS, DemoModel, DemoPlan, discover  # noqa: E402
from ganexport.demo.uploads import bundled_examples  # noqa: E402
from ganexport.images import ImageError  # noqa: E402
from ganexport.serving.backends import Backend, BackendError, InvalidInput, connect  # noqa: E402

# Uploads above this are refused by Gradio before they reach disk: a 48-megapixel phone JPEG is under 16 MB.
MAX_UPLOAD_BYTES = 16 * 2**20
# Gradio deletes the uploads and results it cached for this app every 15 minutes once they are an hour
# old, and all of them when the demo stops.
DELETE_CACHE = (900, 3600)
EXPECTED = (DemoError, ImageError, InvalidInput, BackendError)
# An absolute path (/tmp/..., /home/...), not the path part of a URL or of host:port.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"`]+/)+[^\s/'\"`,;)]*")


def public_message(e: BaseException) -> str:
    """The one-line message the page and API clients get: every absolute path cut to its base name (where
    the server keeps an upload or a repository is nobody's business), and no HTML from a file name."""
    text = _ABSOLUTE_PATH.sub(lambda m: Path(m[0]).name or "upload", one_line(e))
    return html.escape(text, quote=False)


def endpoint(method: Callable[..., tuple], backend: FallbackBackend) -> Callable[..., tuple]:
    """``method``'s outputs plus the backend banner; a failure as ``gr.Error``. ``functools.wraps`` keeps the
    method's signature, so the API names its parameters after the method's."""
    @functools.wraps(method)
    def run(*args):
        try:
            result = method(*args)
        except EXPECTED as e:
            raise gr.Error(public_message(e), print_exception=False) from None
        except Exception as e:  # a bug: the server log gets the stack, the page one line
            traceback.print_exc()
            raise gr.Error(f"internal error ({type(e).__name__}: {public_message(e)})", print_exception=False) from None
        return (*result, backend.banner())

    return run


def _lenient_image_preprocess(component: gr.Image) -> None:
    """Hand the raw uploaded path to our code when Gradio cannot open it, so a non-image or corrupt
    upload gets our one-line message instead of Gradio's generic error."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            return getattr(payload, "path", None)

    component.preprocess = preprocess


def _discard_upload(app: gr.Blocks, path: str) -> None:
    """Delete a file this app received through Gradio's upload route (never an example or any other file)."""
    if path not in app.upload_file_set:
        return
    try:
        Path(path).unlink()
        Path(path).parent.rmdir()  # Gradio keeps each upload in a folder of its own; only if now empty
    except OSError:
        pass


def _listing(models: list[DemoModel]) -> str:
    return "\n".join(f"- {m.describe()}" for m in models)


# --------------------------------------------------------------------------- the tabs


class _Page:
    """What every tab wires to: the handlers, the banner they update, and the plan."""

    def __init__(self, app: gr.Blocks, handlers: Handlers, backend: FallbackBackend, plan: DemoPlan,
                 banner: gr.Markdown):
        self.app, self.h, self.backend, self.plan, self.banner = app, handlers, backend, plan, banner

    def wire(self, event, method, inputs: list, outputs: list, api_name: str | bool) -> None:
        event(endpoint(method, self.backend), inputs=inputs, outputs=[*outputs, self.banner], api_name=api_name)

    def on_load(self, method, inputs: list, outputs: list) -> None:
        """Run ``method`` on the inputs' default values when the page opens, so every tab shows a result before
        any click (fixed seeds and examples: the same result on every visit)."""
        self.wire(self.app.load, method, inputs, outputs, False)

    def names(self, tab: str) -> list[str]:
        return [m.name for m in self.plan.tab(tab)]


def _about(text: str, elem_id: str | None = None) -> None:
    """What a tab's models are and how they were trained: folded away under the results."""
    with gr.Accordion("About this model", open=False):
        gr.Markdown(text, elem_id=elem_id)


def _sample_tab(page: _Page) -> None:
    models = page.names("sample")
    with gr.Tab("Sample", id="sample", elem_id="tab-sample"):
        with gr.Row():
            model = gr.Dropdown(models, value=models[0], label="model")
            seed = gr.Number(0, precision=0, minimum=0, label="seed")
            count = gr.Slider(1, MAX_COUNT, value=16, step=1, label="count")
        button = gr.Button("Sample", variant="primary", elem_id="sample-btn")
        image = gr.Image(format="png", label="samples", type="pil", elem_id="sample-output")
        status = gr.Markdown(elem_id="sample-status")
        page.wire(button.click, page.h.sample, [model, seed, count], [image, status], "sample")
        page.on_load(page.h.sample, [model, seed, count], [image, status])
        gr.Markdown("### Latent walk between two seeds")
        with gr.Row():
            from_seed = gr.Number(0, precision=0, minimum=0, label="from seed")
            to_seed = gr.Number(1, precision=0, minimum=0, label="to seed")
            frames = gr.Slider(2, MAX_FRAMES, value=10, step=1, label="frames")
        button = gr.Button("Walk", elem_id="walk-btn")
        image = gr.Image(format="png", label="latent walk", type="pil", elem_id="walk-output")
        status = gr.Markdown(elem_id="walk-status")
        page.wire(button.click, page.h.latent_walk, [model, from_seed, to_seed, frames], [image, status],
                  "latent_walk")
        page.on_load(page.h.latent_walk, [model, from_seed, to_seed, frames], [image, status])
        _about(_listing(page.plan.tab("sample")))


def _conditional_tab(page: _Page, app: gr.Blocks) -> None:
    served = page.plan.tab("conditional")
    # Every model's classes (and every model beside), so an API call for any of them passes Gradio's check;
    # the handler checks the model's own, and the page narrows the lists to the chosen model's.
    all_names = list(dict.fromkeys(name for m in served for name in m.class_names))
    first = served[0].name

    def first_beside(model: str) -> str:
        return page.plan.first_partner(model) or NOTHING_BESIDE

    def classes_of(model: str):
        names = page.plan.get(model, "conditional").class_names
        return (gr.update(choices=names, value=names[0]),
                gr.update(choices=[NOTHING_BESIDE, *page.plan.partners(model)], value=first_beside(model)),
                gr.update(label=f"{model}: one class, several seeds"))

    def beside_shown(beside: str):
        return gr.update(visible=beside != NOTHING_BESIDE, label=f"{beside}, same class and seeds")

    with gr.Tab("Conditional", id="conditional", elem_id="tab-conditional"):
        with gr.Row():
            model = gr.Dropdown([m.name for m in served], value=first, label="model")
            beside = gr.Dropdown([NOTHING_BESIDE, *(m.name for m in served)], value=first_beside(first),
                                 label="beside it (same class, same seeds)", elem_id="beside-model")
            class_name = gr.Dropdown(all_names, value=served[0].class_names[0], label="class")
            seed = gr.Number(0, precision=0, minimum=0, label="seed")
            count = gr.Slider(1, 32, value=8, step=1, label="seeds")
        if any(m.signature.kind == "diffuse" for m in served):
            gr.Markdown(f"A diffusion model draws a class here with {DEFAULT_STEPS} DDIM steps at its own guidance "
                        "scale; the Diffusion tab has its sampler settings.")
        button = gr.Button("Generate this class", variant="primary", elem_id="class-btn")
        with gr.Row():
            with gr.Column():
                image = gr.Image(format="png", label=f"{first}: one class, several seeds", type="pil",
                                 elem_id="class-output")
                status = gr.Markdown(elem_id="class-status")
            with gr.Column():
                shown = first_beside(first)
                other = gr.Image(format="png", label=f"{shown}, same class and seeds", type="pil",
                                 elem_id="beside-output", visible=shown != NOTHING_BESIDE)
                other_status = gr.Markdown(elem_id="beside-status")
        model.change(classes_of, [model], [class_name, beside, image], api_name=False)
        if len(served) > 1:
            app.load(classes_of, [model], [class_name, beside, image], api_name=False)
        beside.change(beside_shown, [beside], [other], api_name=False)
        page.wire(button.click, page.h.conditional, [class_name, seed, count, model], [image, status], "conditional")
        page.wire(button.click, page.h.beside, [class_name, seed, count, beside], [other, other_status],
                  "conditional_beside")
        page.on_load(page.h.conditional, [class_name, seed, count, model], [image, status])
        with gr.Row():
            rows = gr.Slider(1, MAX_ROWS, value=3, step=1, label="rows (one seed each)")
        button = gr.Button("Every class side by side", elem_id="all-btn")
        image = gr.Image(format="png", label="every class", type="pil", elem_id="all-output")
        status = gr.Markdown(elem_id="all-status")
        page.wire(button.click, page.h.all_classes, [seed, rows, model], [image, status], "all_classes")
        _about(_listing(served))


def _diffusion_tab(page: _Page) -> None:
    served = page.plan.tab("diffusion")
    first = served[0]
    # The widest ranges of the models offered; the handler holds each request to its model's own.
    limits = [sampler_limits(m) for m in served]
    low_steps, high_steps = min(x[0] for x in limits), max(x[1] for x in limits)
    low_g, high_g = min(x[2] for x in limits), max(x[3] for x in limits)
    all_names = list(dict.fromkeys(name for m in served for name in m.diffusion_classes))
    picks = lambda m: m.diffusion_classes != [NO_CLASS]  # noqa: E731  (a class picker only where there are classes)
    guides = lambda m: sampler_limits(m)[3] > sampler_limits(m)[2]  # noqa: E731  (not one that takes guidance 1 alone)

    def classes_of(model: str):
        chosen = page.plan.get(model, "diffusion")
        names = chosen.diffusion_classes
        return (gr.update(choices=names, value=names[0], visible=picks(chosen)),
                gr.update(value=class_defaults(chosen)[1], visible=guides(chosen)))

    with gr.Tab("Diffusion", id="diffusion", elem_id="tab-diffusion"):
        gr.Markdown("The sampler starts from seeded noise and removes it step by step. More steps give cleaner "
                    "images and take longer; guidance above 1 pushes each image towards its class (0 ignores the "
                    "class); ancestral sampling adds fresh noise at every step.")
        with gr.Row():
            model = gr.Dropdown([m.name for m in served], value=first.name, label="model")
            class_name = gr.Dropdown(all_names, value=first.diffusion_classes[0], label="class", visible=picks(first))
            seed = gr.Number(0, precision=0, minimum=0, label="seed")
            count = gr.Slider(1, MAX_DIFFUSION_COUNT, value=8, step=1, label="count")
        with gr.Row():
            steps = gr.Slider(low_steps, high_steps, value=class_defaults(first)[0], step=1, label="steps")
            guidance = gr.Slider(low_g, max(high_g, low_g + 1), value=class_defaults(first)[1], step=0.1,
                                 label="guidance", visible=guides(first))
            ancestral = gr.Checkbox(False, label="ancestral (eta 1)")
        if len(served) > 1:
            model.change(classes_of, [model], [class_name, guidance], api_name=False)
        button = gr.Button("Denoise", variant="primary", elem_id="diffusion-btn")
        image = gr.Image(format="png", label="samples", type="pil", elem_id="diffusion-output")
        frames = gr.Image(format="png", label="denoising trajectory of the first sample (noise -> image)",
                          type="pil", elem_id="diffusion-trajectory")
        status = gr.Markdown(elem_id="diffusion-status")
        page.wire(button.click, page.h.diffusion, [class_name, steps, guidance, seed, count, model, ancestral],
                  [image, frames, status], "diffusion")
        page.on_load(page.h.diffusion, [class_name, steps, guidance, seed, count, model, ancestral],
                     [image, frames, status])
        _about(_listing(served))


def _latent_tab(page: _Page) -> None:
    models = page.names("latent")
    with gr.Tab("Latent space", id="latent", elem_id="tab-latent"):
        gr.Markdown("Move the sliders to pick a point of the 2-D latent space (standard units: 0 is the centre of "
                    "the training codes, 1 one standard deviation); the decoder draws it.")
        model = gr.Dropdown(models, value=models[0], label="decoder")
        with gr.Row():
            x = gr.Slider(-4, 4, value=0, step=0.05, label="z[0] (x)")
            y = gr.Slider(-4, 4, value=0, step=0.05, label="z[1] (y)")
        with gr.Row():
            point = gr.Image(format="png", label="decoded point", type="pil", elem_id="point-output")
            grid = gr.Image(format="png", label="manifold", type="pil", elem_id="manifold-output")
        status = gr.Markdown(elem_id="point-status")
        for event in (x.release, y.release, model.change):
            page.wire(event, page.h.decode_point, [model, x, y], [point, status], False)
        button = gr.Button("Decode point", elem_id="point-btn")
        page.wire(button.click, page.h.decode_point, [model, x, y], [point, status], "decode_point")
        with gr.Row():
            grid_size = gr.Slider(2, MAX_GRID, value=12, step=1, label="grid size")
            extent = gr.Slider(0.5, 4, value=2, step=0.5, label="extent (|z| up to)")
        button = gr.Button("Draw manifold", elem_id="manifold-btn")
        status = gr.Markdown(elem_id="manifold-status")
        page.wire(button.click, page.h.manifold, [model, grid_size, extent], [grid, status], "manifold")
        page.on_load(page.h.decode_point, [model, x, y], [point, status])
        page.on_load(page.h.manifold, [model, grid_size, extent], [grid, status])
        if any(page.plan.partner(m, "encode") for m in models):
            gr.Markdown("### Where does your image land?\nThe encoder served beside the decoder places an "
                        "upload in the 2-D space (resized to the training images' size; Fashion-MNIST "
                        "garments are light on black) and the sliders move there.")
            with gr.Row():
                upload = gr.Image(type="filepath", image_mode=None, label="your image (upload)", sources=["upload"],
                                  elem_id="locate-input")
                _lenient_image_preprocess(upload)
                button = gr.Button("Locate", elem_id="locate-btn")
            located = gr.Markdown(elem_id="locate-status")
            page.wire(button.click, page.h.locate, [model, upload], [point, located, x, y], "locate")
        _about(_listing(page.plan.tab("latent")))


def _named_strengths(method: Callable[..., tuple], names: tuple[str, ...]) -> Callable[..., tuple]:
    """``method(*fixed, *strengths)`` with one named parameter per attribute in place of ``*strengths``, so the
    page's API names each slider after its attribute (Gradio reads the signature)."""
    import inspect

    fixed = [p for p in inspect.signature(method).parameters.values() if p.kind != p.VAR_POSITIONAL]

    def call(*args):
        return method(*args)

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    call.__signature__ = inspect.Signature(
        fixed + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return call


def _arithmetic_tab(page: _Page) -> None:
    served = page.plan.tab("arithmetic")
    first = served[0].signature
    strength = first.inputs[1]
    with gr.Tab("Latent arithmetic", id="arithmetic", elem_id="tab-arithmetic"):
        gr.Markdown("A face goes through the encoder to its latent; the decoder draws it back (the "
                    "reconstruction). An attribute's vector is the mean latent of held-out faces with it minus the "
                    "mean of those without it: strength 1 adds it once, -1 takes it away, in one request to the edit "
                    "model. Pick a held-out face by number, or upload one (cropped to a square).")
        with gr.Row():
            model = gr.Dropdown([m.name for m in served], value=served[0].name, label="model")
            face = gr.Number(0, precision=0, minimum=0, label="held-out face (A)")
            image = gr.Image(type="filepath", image_mode=None, label="or your face as A (upload)",
                             sources=["upload"], elem_id="arithmetic-input")
            _lenient_image_preprocess(image)
        with gr.Row():
            sliders = [gr.Slider(strength.low, strength.high, value=float(i == 0), step=0.1, label=name,
                                 elem_id=f"strength-{name}") for i, name in enumerate(first.attributes)]
        button = gr.Button("Reconstruct and edit", variant="primary", elem_id="edit-btn")
        with gr.Row():
            shown = gr.Image(format="png", label="face", type="pil", elem_id="edit-input")
            recon = gr.Image(format="png", label="reconstruction", type="pil", elem_id="edit-recon")
            edited = gr.Image(format="png", label="edited", type="pil", elem_id="edit-output")
        status = gr.Markdown(elem_id="edit-status")
        last_upload = gr.State(None, time_to_live=3600)
        page.wire(button.click, _named_strengths(page.h.edit_face, first.attributes),
                  [model, face, image, last_upload, *sliders],
                  [shown, recon, edited, status, last_upload], "edit_face")
        page.on_load(page.h.edit_face, [model, face, image, last_upload, *sliders],
                     [shown, recon, edited, status, last_upload])
        gr.Markdown("### Morph: from face A to face B along the line between their latents")
        with gr.Row():
            face_b = gr.Number(1, precision=0, minimum=0, label="held-out face (B)")
            frames = gr.Slider(2, MAX_MORPH, value=8, step=1, label="frames")
            button = gr.Button("Morph", elem_id="morph-btn")
        row = gr.Image(format="png", label="morph", type="pil", elem_id="morph-output")
        status = gr.Markdown(elem_id="morph-status")
        page.wire(button.click, page.h.morph, [model, face, face_b, frames, image, last_upload],
                  [row, status, last_upload], "morph")
        gr.Markdown("### A - B + C: take from A what B has, give it what C has")
        with gr.Row():
            face_b = gr.Number(2, precision=0, minimum=0, label="held-out face (B)")
            face_c = gr.Number(3, precision=0, minimum=0, label="held-out face (C)")
            button = gr.Button("A - B + C", elem_id="combine-btn")
        row = gr.Image(format="png", label="A, B, C and A - B + C", type="pil", elem_id="combine-output")
        status = gr.Markdown(elem_id="combine-status")
        page.wire(button.click, page.h.combine, [model, face, face_b, face_c, image, last_upload],
                  [row, status, last_upload], "combine")
        _about(_listing(served))


def _choices(models: list[DemoModel]) -> list[tuple[str, str]]:
    """(label, model) per translator: its direction, with its name where two share one."""
    directions = [m.direction for m in models]
    return [(d if directions.count(d) == 1 else f"{d} ({m.name})", m.name) for d, m in zip(directions, models)]


def _translate_tab(page: _Page, examples: list[Path]) -> None:
    served = page.plan.tab("translate")
    largest = max(m.signature.max_image_side or catalog.MAX_IMAGE_SIDE for m in served)
    smallest = min(m.signature.min_image_side or catalog.MIN_IMAGE_SIDE for m in served)

    def target_column(model: str):
        return gr.update(visible=page.plan.get(model, "translate").shows_filter_target)

    with gr.Tab("Translate", id="translate", elem_id="tab-translate"):
        model = gr.Radio(_choices(served), value=served[0].name, label="translator")
        with gr.Row():
            # image_mode=None: Gradio hands over the file untouched; read_upload converts RGBA (onto white),
            # palette, 16-bit and animated images properly, where Gradio's RGB conversion would not.
            image = gr.Image(type="filepath", image_mode=None, label="your photo (upload)", sources=["upload"],
                             elem_id="translate-input")
            _lenient_image_preprocess(image)
            button = gr.Button("Translate", variant="primary", elem_id="translate-btn")
        with gr.Row():
            shown = gr.Image(format="png", label="input", type="pil", elem_id="translate-shown")
            output = gr.Image(format="png", label="model output", type="pil", elem_id="translate-output")
            target = gr.Image(format="png", label="true pencil_sketch filter (the training target)", type="pil",
                              elem_id="translate-truth", visible=served[0].shows_filter_target)
        status = gr.Markdown(elem_id="translate-status")
        # The bytes of this session's last upload: the file is deleted once read, and the other direction
        # still works on it.
        last_upload = gr.State(None, time_to_live=3600)
        model.change(target_column, [model], [target], api_name=False)
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[image],
                        label="bundled examples (the '-sketch' one is made by the pencil-sketch filter)")
        page.wire(button.click, page.h.translate, [image, model, last_upload],
                  [shown, output, target, status, last_upload], "translate")
        if examples:
            photo = examples[0]  # a photo no translator was trained on (scikit-image's, else a bundled one)

            def example_translation(model: str) -> tuple:
                *images, status, _ = page.h.translate(str(photo), model)
                return (*images, f"Bundled example {photo.name}: {status} Upload your own photo above.")

            page.on_load(example_translation, [model], [shown, output, target, status])
        _about(_listing(served) + f"\n\n**Sizes:** the output keeps the input's size. A photo with a side above "
               f"{largest} pixels (a limit for CPU latency) is scaled down to fit, keeping its aspect ratio; one "
               f"with a side below {smallest} pixels is refused. An animated GIF is translated from its first "
               "frame.", elem_id="translate-models")


# --------------------------------------------------------------------------- the app


def build_app(backend_factory: Callable[[], Backend] | None = None, *, backend_kind: str = "triton-grpc",
              triton_url: str | None = None, repository: str | os.PathLike = "model_repository",
              fallback_factory: Callable[[], Backend] | None = None, examples_dir: str | None = None) -> gr.Blocks:
    """The demo's Blocks. ``backend_factory`` makes the primary backend (default: ``connect(backend_kind, ...)``);
    Triton kinds fall back to in-process ONNX Runtime on ``repository`` (or ``fallback_factory``). The tabs
    are those the published models fill; the page opens on the first of them."""
    repository = Path(repository)
    if backend_factory is None:
        backend_factory = lambda: connect(backend_kind, repository=repository, url=triton_url)  # noqa: E731
    if fallback_factory is None and backend_kind.startswith("triton"):
        fallback_factory = lambda: connect("onnxruntime", repository=repository)  # noqa: E731
    label = backend_kind + (f" at {triton_url}" if triton_url else "")
    backend = FallbackBackend(backend_factory, fallback_factory, primary_label=label)
    plan = discover(backend, repository)
    for model, why in plan.missing.items():  # the page says which, in one line; the log says why
        print(f"demo: {model} is not served: {why}", flush=True)

    with gr.Blocks(title="ganexport demo", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        gr.Markdown("# ganexport demo\nGenerative models exported to ONNX/TorchScript and served by Triton. "
                    "Every result says which backend served it and how long the model call took.")
        banner = gr.Markdown(backend.banner(), elem_id="backend-banner")
        if plan.missing_line():
            gr.Markdown(plan.missing_line(), elem_id="startup-errors")
        if not plan.tabs:
            gr.Markdown("Nothing is published yet: run `ganexport build --model all`, then start the demo again.",
                        elem_id="nothing-published")
        page = _Page(app, Handlers(backend, plan, discard=lambda path: _discard_upload(app, path)), backend, plan,
                     banner)
        with gr.Tabs(selected=plan.tabs[0] if plan.tabs else None):
            for tab in plan.tabs:
                if tab == "sample":
                    _sample_tab(page)
                elif tab == "conditional":
                    _conditional_tab(page, app)
                elif tab == "latent":
                    _latent_tab(page)
                elif tab == "diffusion":
                    _diffusion_tab(page)
                elif tab == "arithmetic":
                    _arithmetic_tab(page)
                else:
                    examples_at = Path(examples_dir or Path(os.environ["GRADIO_TEMP_DIR"]) / "examples")
                    _translate_tab(page, bundled_examples(examples_at))
        app.demo_backend = backend  # for tests and for launch() to close
        app.demo_plan = plan
    return app


def launch(backend_kind: str = "triton-grpc", triton_url: str | None = None,
           repository: str | os.PathLike = "model_repository", host: str = "127.0.0.1", port: int = 7860,
           triton_access: dict[str, Any] | None = None, **launch_kw: Any) -> gr.Blocks:
    """Build the demo and serve it on ``host:port``: never a public share link, uploads capped at
    ``MAX_UPLOAD_BYTES`` unless ``max_file_size`` says otherwise, files served from Gradio's temp folder only.
    ``triton_access`` (``token``, ``tls_ca``) goes to ``connect`` for a Triton front door that wants them;
    Gradio's ``auth=`` in ``launch_kw`` puts a login in front of the page and its API alike."""
    factory = None
    if triton_access:
        factory = lambda: connect(backend_kind, repository=repository, url=triton_url, **triton_access)  # noqa: E731
    app = build_app(factory, backend_kind=backend_kind, triton_url=triton_url, repository=repository)
    launch_kw.pop("share", None)
    launch_kw.setdefault("max_file_size", MAX_UPLOAD_BYTES)
    app.queue().launch(server_name=host, server_port=port, share=False, show_error=False, **launch_kw)
    return app


if __name__ == "__main__":
    launch()
