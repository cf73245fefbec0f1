"""A folder written by diffusers' ``save_pretrained``: a DDPMPipeline or DDIMPipeline, read as a diffusion model.

Accepted layouts: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``); a folder holding
``unet/`` and ``scheduler/`` alone; or a UNet2DModel folder (``config.json`` and its weights) with a
``scheduler/`` folder beside it. The UNet may embed classes (``num_class_embeds``: a served ``label``
0..n-1), takes 1 or 3 channels, and serves its ``sample_size``. Its weights are read as tensors only
(safetensors, or ``torch.load(weights_only=True)``) into the UNet its config builds, strictly.

The scheduler config is turned into what DDIMPipeline samples with, ``DDIMScheduler.from_config`` (a
DDPMScheduler folder included), and kept in the import record with the UNet's config; the served loop
reproduces that scheduler (ganexport/ddim_scheduler.py), which is checked here against diffusers' own
(``alphas_cumprod`` and the timesteps of every step count). What the loop cannot reproduce is refused in
one line naming the option. diffusers has no "no class" label, so classifier-free guidance is offered
only for the class index the user names with ``--null-class``; otherwise a served request takes guidance 1.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ganexport.ddim_scheduler import BETA_SCHEDULES, DDIM, KEYS, PREDICTIONS, SPACINGS
from ganexport.export.importers import diffusers_unet, source
from ganexport.export.importers.entry import Converted
from ganexport.export.importers.source import ImportRefused
from ganexport.repository import sha256

PIPELINES = ("DDPMPipeline", "DDIMPipeline")
SCHEDULERS = ("DDIMScheduler", "DDPMScheduler")
UNET = "UNet2DModel"
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
INDEX, UNET_CONFIG, SCHEDULER_CONFIG = "model_index.json", "config.json", "scheduler_config.json"
SERVE_MAX_BATCH = 16  # rows per request: a 50-step walk of 16 images is already minutes on a CPU
# Options whose value the served loop cannot reproduce (anything but the value given).
UNSUPPORTED = {"thresholding": False, "rescale_betas_zero_snr": False}


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ImportRefused(f"{path.name}: unreadable {what} ({str(e).splitlines()[0]})") from None
    if not isinstance(found, dict):
        raise ImportRefused(f"{path.name}: {what} is not a JSON object")
    return found


def locate(folder: Path) -> tuple[str, Path, Path]:
    """(what it is, the UNet's folder, the scheduler's folder) of any accepted layout."""
    if not folder.is_dir():
        raise ImportRefused(f"{folder.name}: --format diffusers takes a folder written by save_pretrained")
    if (folder / INDEX).is_file():
        index = _json(folder / INDEX, "pipeline index")
        kind = index.get("_class_name")
        if kind not in PIPELINES:
            raise ImportRefused(f"{folder.name}: a {kind} (model_index.json); ganexport serves "
                                f"{' and '.join(PIPELINES)} folders (a UNet2DModel and its scheduler)")
        unet = index.get("unet")
        if not isinstance(unet, list) or unet[-1:] != [UNET]:
            raise ImportRefused(f"{folder.name}: its unet is a {unet[-1] if isinstance(unet, list) else unet}, "
                                f"not a {UNET}")
        return kind, folder / "unet", folder / "scheduler"
    if (folder / UNET_CONFIG).is_file():
        return f"{UNET} folder", folder, folder.parent / "scheduler"
    if (folder / "unet").is_dir():
        return f"{UNET} and scheduler folders", folder / "unet", folder / "scheduler"
    raise ImportRefused(f"{folder.name}: not a diffusers folder: no {INDEX}, unet/ or {UNET_CONFIG}")


def weights_file(unet_dir: Path) -> Path:
    """The UNet's weights: safetensors before a torch file; a lone variant (``.fp16.safetensors``) too."""
    for name in WEIGHTS:
        if (unet_dir / name).is_file():
            return unet_dir / name
    if any(unet_dir.glob("*.index.json")):
        raise ImportRefused(f"{unet_dir.name}/: sharded weights (*.index.json); save the UNet unsharded "
                            f"(save_pretrained(max_shard_size='10GB'))")
    variants = sorted(p for p in unet_dir.glob("diffusion_pytorch_model.*") if p.suffix in (".safetensors", ".bin"))
    if len(variants) == 1:
        return variants[0]
    raise ImportRefused(f"{unet_dir.name}/: no {' or '.join(WEIGHTS)}"
                        + (f" (variants {source.some(p.name for p in variants)}: keep one)" if variants else ""))


def image_shape(config: dict[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) the UNet serves: its ``sample_size`` and channels (refused unless in == out, 1 or 3)."""
    cin, cout, size = config.get("in_channels"), config.get("out_channels"), config.get("sample_size")
    if cin not in (1, 3) or cout != cin:
        raise ImportRefused(f"unet/config.json: in_channels {cin}, out_channels {cout}; ganexport serves images of "
                            f"1 or 3 channels, predicted in as many (a learned variance is not served)")
    if isinstance(size, int):
        return size, size, cin
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return size[0], size[1], cin
    raise ImportRefused(f"unet/config.json: sample_size {size!r}; the served image size must be set "
                        f"(an int or [height, width])")


def check_unet(config: dict[str, Any]) -> None:
    """ImportRefused naming the first UNet option the served denoiser cannot take."""
    if config.get("_class_name", UNET) != UNET:
        raise ImportRefused(f"unet/config.json: a {config['_class_name']}; ganexport serves {UNET} pipelines "
                            f"(unconditional or class-conditional DDPM/DDIM)")
    if config.get("class_embed_type") is not None:
        raise ImportRefused(f"unet/config.json: class_embed_type {config['class_embed_type']!r}; ganexport serves "
                            f"class labels through num_class_embeds (an embedding table) only")
    if config.get("time_embedding_type", "positional") == "fourier":
        raise ImportRefused("unet/config.json: time_embedding_type 'fourier' (a score-SDE UNet, sampled by its own "
                            "scheduler, not DDIM)")


def ddim_config(raw: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The DDIMScheduler DDIMPipeline would make of ``raw`` (its KEYS), refused where the loop cannot follow."""
    DDIMScheduler = diffusers_unet.library().DDIMScheduler

    kind = raw.get("_class_name")
    if kind not in SCHEDULERS:
        raise ImportRefused(f"scheduler_config.json: a {kind}; the served loop reproduces DDIMScheduler, which "
                            f"DDIMPipeline makes of a DDIMScheduler or DDPMScheduler config")
    for option, allowed in UNSUPPORTED.items():
        if raw.get(option, allowed) != allowed:
            raise ImportRefused(f"scheduler_config.json: {option} {json.dumps(raw[option])}; the served loop does not "
                                f"reproduce it (only {json.dumps(allowed)})")
    for option, known in (("timestep_spacing", SPACINGS), ("prediction_type", PREDICTIONS)):
        if option in raw and raw[option] not in known:
            raise ImportRefused(f"scheduler_config.json: {option} {raw[option]!r}; the served loop reproduces "
                                f"{', '.join(known)}")
    if raw.get("trained_betas") is None and raw.get("beta_schedule", "linear") not in BETA_SCHEDULES:
        raise ImportRefused(f"scheduler_config.json: beta_schedule {raw['beta_schedule']!r}; the served loop "
                            f"reproduces {', '.join(BETA_SCHEDULES)} and trained_betas")
    try:
        scheduler = DDIMScheduler.from_config(raw)
    except Exception as e:  # diffusers' own refusal of a config, in its words
        raise ImportRefused(f"scheduler_config.json: DDIMScheduler refuses it ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:200]})") from None
    config = {k: scheduler.config[k] for k in KEYS}
    if config["trained_betas"] is not None:
        config["trained_betas"] = [float(b) for b in np.asarray(config["trained_betas"], np.float64).reshape(-1)]
    if kind != "DDIMScheduler":
        log(f"scheduler_config.json: a {kind}; sampled as DDIMPipeline samples it (DDIMScheduler.from_config)")
    return config


def reproduce(config: dict[str, Any]) -> int:
    """Check the served loop's scheduler against diffusers' for this config (the noise schedule, and the
    timesteps of every step count); returns the most steps a request may ask for."""
    DDIMScheduler = diffusers_unet.library().DDIMScheduler

    ours, theirs = DDIM(config), DDIMScheduler.from_config(config)
    gap = np.abs(ours.alphas_cumprod.astype(np.float64) - theirs.alphas_cumprod.numpy())
    if not (gap <= 1e-6 * theirs.alphas_cumprod.numpy()).all():  # equal here; an ulp on another CPU's torch
        raise ImportRefused(f"scheduler_config.json: the served loop's alphas_cumprod differ from diffusers' by "
                            f"{gap.max():.2g} for beta_schedule {config['beta_schedule']!r}")
    top = ours.max_steps()
    for n in range(1, top + 1):
        theirs.set_timesteps(n)
        if not np.array_equal(ours.walk(n), theirs.timesteps.numpy()):
            raise ImportRefused(f"scheduler_config.json: at {n} steps the served loop's timesteps differ from "
                                f"diffusers' (timestep_spacing {config['timestep_spacing']!r})")
    return top


def folder_sha256(files: list[Path], root: Path) -> str:
    """One digest of the files read: each one's path below the folder and its own sha256."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256(path)}\n".encode())
    return digest.hexdigest()


def describe(unet, shape: tuple[int, int, int], classes: int, null: int | None, ddim: dict[str, Any]) -> str:
    """One line for the import's log and the model's description: the UNet, what it serves, its walk."""
    params = sum(p.numel() for p in unet.parameters())
    h, w, c = shape
    conditioning = (f"{classes} classes" + (f" ({null} = no class)" if null is not None else "")) if classes else \
        "unconditional"
    betas = "trained" if ddim["trained_betas"] is not None else ddim["beta_schedule"]
    return (f"UNet2DModel {params / 1e6:.2f}M parameters, {h}x{w}x{c}, {conditioning}; DDIM with {betas} betas over "
            f"{ddim['num_train_timesteps']} timesteps, {ddim['prediction_type']}, {ddim['timestep_spacing']} spacing")


def convert(path: Path, options: dict[str, Any], log: Callable[[str], None] = print) -> Converted:
    """The pipeline in a diffusers folder as a "diffuse" model: its UNet as the denoiser, its scheduler kept."""
    folder = Path(path)
    diffusers_unet.library()  # the extra it needs, before anything is read
    what, unet_dir, scheduler_dir = locate(folder)
    if not (unet_dir / UNET_CONFIG).is_file():
        raise ImportRefused(f"{folder.name}: no {unet_dir.name}/{UNET_CONFIG}")
    if not (scheduler_dir / SCHEDULER_CONFIG).is_file():
        raise ImportRefused(f"{folder.name}: no scheduler/{SCHEDULER_CONFIG} beside the UNet")
    unet_config = _json(unet_dir / UNET_CONFIG, "UNet config")
    check_unet(unet_config)
    shape = image_shape(unet_config)
    raw_scheduler = _json(scheduler_dir / SCHEDULER_CONFIG, "scheduler config")
    ddim = ddim_config(raw_scheduler, log)
    classes = unet_config.get("num_class_embeds") or 0
    null = options.get("null_class")
    if null is not None and not 0 <= null < classes:
        raise ImportRefused(f"--null-class {null}: " + (f"the UNet embeds classes 0..{classes - 1}" if classes else
                                                         "the UNet embeds no classes (num_class_embeds)"))
    try:
        unet = diffusers_unet.unet(unet_config)
    except Exception as e:  # diffusers' own refusal of a config, in its words
        raise ImportRefused(f"unet/config.json: UNet2DModel refuses it ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:200]})") from None
    weights = weights_file(unet_dir)
    state = source.state_dict(weights, source.load(weights), None, what="a UNet2DModel state dict")
    source.check_finite(weights, state)
    source.load_into(unet, state, weights)
    top = reproduce(ddim)
    unet_kept = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    summary = describe(unet, shape, classes, null, ddim)
    log(f"{folder.name}: {what}: {summary}")
    hparams = {"unet": unet_kept, "ddim": ddim, "timesteps": int(ddim["num_train_timesteps"]), "num_classes": classes,
               "null_label": null, "max_steps": top, "guidance": 1.0, "serve_max_batch": SERVE_MAX_BATCH,
               "scheduler_config": raw_scheduler}  # the folder's own, as saved (ddim: what DDIMPipeline makes of it)
    read = [p for p in (folder / INDEX, unet_dir / UNET_CONFIG, weights, scheduler_dir / SCHEDULER_CONFIG)
            if p.is_file()]
    root = folder if all(folder in p.parents for p in read) else folder.parent
    return Converted(kind="diffuse", factory=diffusers_unet.FACTORY, hparams=hparams, image_shape=shape,
                     net=diffusers_unet.DiffusersDenoiser(unet).eval(), description=f"diffusers {what}: {summary}",
                     conditional=bool(classes), source_sha256=folder_sha256(read, root))
