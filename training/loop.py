"""The one training loop every family shares.

A family (autoencoder.py, vae.py, dcgan.py, ...) subclasses ``Family`` and says
only what differs: its optimizers, one training step, and what its sample grid
shows. This module does the rest, the same way for all of them: load data,
draw batches, run steps with a progress bar, log losses and training health,
draw sample grids and loss curves, and write self-describing checkpoints into
``runs/<model>/<run-id>/``.

    >>> from ganexport.training.loop import TrainConfig, train
    >>> run_dir = train(TrainConfig(model="dcgan", profile="smoke", dataset="digits"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import shlex
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

import ganexport
from ganexport import catalog
from ganexport.machine import cpu_model
from ganexport.training import checkpoint, data, judge, parallel, photos
from ganexport.training.eval import within_class_l1
from ganexport.training.plots import save_grid, save_loss_curves
from ganexport.training.weight_average import WeightAverage

Batch = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything a run depends on; ``hp`` overrides the profile's hyper-parameters."""

    model: str
    profile: str = "quick"
    dataset: str | None = None  # default: the catalog's, or detected from data_dir
    data_dir: str | None = None
    device: str = "auto"
    seed: int = 0
    steps: int | None = None
    epochs: float | None = None
    out: str = "runs"
    resume: str | None = None
    image_size: int | None = None
    limit: int | None = None  # cap on training images (tests, quick looks)
    hp: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    progress: bool = True
    # the float type of the run's nets, data and random draws (catalog.PRECISIONS). float64 costs several times
    # float32's time and keeps the rounding of sums taken in another order (another batch split, another CPU's
    # kernels) about 1e9 times smaller: what a check that N processes train what one process trains needs.
    precision: str = "float32"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is usable here "
                           "(torch.cuda.is_available() is False)")
    return torch.device(device)


# --------------------------------------------------------------------------- data on device


class Batches:
    """The training set as float NCHW tensors in [-1, 1], and a seeded random batch sampler.

    Sampling with replacement from memory keeps a step a step, whatever the
    dataset size, which makes --steps, --resume and profiles simple.
    ``batch_size`` is the global batch: in a data-parallel run every process
    draws the same indices and trains on its own rows of them (``parallel``).
    """

    def __init__(self, loaded: data.ImageSet | data.DomainPair, batch_size: int, device, seed: int,
                 world: parallel.World = parallel.SINGLE):
        world.check_batch(batch_size)
        self.batch_size, self.world = batch_size, world
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        if isinstance(loaded, data.DomainPair):
            self.tensors = {"a": judge.to_tensor(loaded.a, device), "b": judge.to_tensor(loaded.b, device)}
        else:
            self.tensors = {"x": judge.to_tensor(loaded.images, device)}
            if loaded.labels is not None:
                self.tensors["y"] = torch.from_numpy(loaded.labels).long().to(device)

    def __len__(self) -> int:
        return max(len(t) for t in self.tensors.values())

    def draw(self) -> Batch:
        out, idx = {}, None
        for key, t in self.tensors.items():
            if key in ("a", "b") or idx is None:  # CycleGAN domains are unpaired: draw each apart
                idx = torch.randint(0, len(t), (self.batch_size,), generator=self.generator)
            out[key] = t[self.world.shard(idx).to(t.device)]
        return out


# --------------------------------------------------------------------------- Family: what each training script does


class Family:
    """Base class of a family's training recipe; the loop drives it.

    Subclasses set ``generator_role`` (the net that makes images) and implement
    ``make_optimizers``, ``train_step`` and ``grid``. A step draws its per-row
    randomness from ``self.random`` and updates through ``backward_step``, so
    the same recipe runs data-parallel unchanged (``parallel``).
    """

    generator_role = "generator"

    def __init__(self, spec: catalog.ModelSpec, hp: dict[str, Any], image_shape, device,
                 batches: Batches, seed: int):
        self.spec, self.hp, self.image_shape, self.device = spec, hp, tuple(image_shape), device
        self.batches, self.world = batches, batches.world
        self.random = parallel.RowRandom(self.world, device)
        torch.manual_seed(seed)
        self.nets = {role: spec.build(role, image_shape, hp).to(device) for role in spec.nets}
        if self.world.parallel:
            self.nets = {role: parallel.global_batch_norm(net) for role, net in self.nets.items()}
            self.world.same_start(self.nets.values())
        self.optimizers = self.make_optimizers()
        self.fixed = self.make_fixed(torch.Generator().manual_seed(seed + 1))

    # -- to implement ---------------------------------------------------------

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, draw: Callable[[], Batch]) -> dict[str, float]:
        """One step (one generator update); returns losses (``loss_*``) and health figures."""
        raise NotImplementedError

    def grid(self) -> tuple[torch.Tensor, int]:
        """Images for the sample grid (NCHW in [-1, 1]) and how many per row."""
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------

    def make_fixed(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Inputs kept fixed for the whole run, so grids show progress, not noise."""
        if "latent_dim" not in self.hp:
            return {}
        return {"z": torch.randn(64, self.hp["latent_dim"], generator=gen).to(self.device)}

    def samples(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``n`` random samples (and the labels asked for, if conditional), for the class histogram."""
        z = torch.randn(n, self.hp["latent_dim"], generator=gen).to(self.device)
        return self.nets[self.generator_role](z), None

    def extra_meta(self) -> dict[str, Any]:
        """Anything a family wants recorded in the checkpoint (e.g. latent statistics)."""
        return {}

    def adam(self, *roles: str, betas=None) -> torch.optim.Optimizer:
        params = [p for role in roles for p in self.nets[role].parameters()]
        return torch.optim.Adam(params, lr=self.hp["lr"],
                                betas=betas or (self.hp.get("beta1", 0.9), self.hp.get("beta2", 0.999)))

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, *nets: torch.nn.Module) -> float:
        """zero_grad, backward, (gradients averaged over the processes), step; returns the gradient norm of
        ``nets`` (vanishing gradients show here)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        params = [p for net in nets for p in net.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf")).item() if params else 0.0
        optimizer.step()
        return norm

    def train_mode(self, on: bool) -> None:
        for net in self.nets.values():
            net.train(on)


def family_class(spec: catalog.ModelSpec) -> type[Family]:
    """``ganexport.training.<family>.Recipe``: one compact script per family."""
    return importlib.import_module(f"ganexport.training.{spec.family}").Recipe


# --------------------------------------------------------------------------- health


def health_warnings(logs: dict[str, float], classes_present: int | None, num_classes: int,
                    class_variety: float | None = None) -> list[str]:
    """The failure modes the seed material warns about, spelled out when the numbers show them."""
    warnings = []
    if "d_real" in logs and "d_fake" in logs and logs["d_real"] > 0.98 and logs["d_fake"] < 0.02:
        warnings.append("discriminator dominates (D(x)~1, D(G(z))~0): generator gradients may vanish")
    if "grad_g" in logs and logs["grad_g"] < 1e-4:
        warnings.append(f"generator gradient norm {logs['grad_g']:.1e}: vanishing gradients")
    if classes_present is not None and num_classes and classes_present <= num_classes // 2:
        warnings.append(f"only {classes_present}/{num_classes} classes in 1k samples: mode collapse?")
    if class_variety is not None and class_variety < 0.5:
        warnings.append(f"samples of one class differ {class_variety:.2f}x as much as real ones: "
                        "mode collapse inside classes?")
    if any(not math.isfinite(v) for v in logs.values()):
        warnings.append("non-finite loss: training diverged")
    return warnings


# --------------------------------------------------------------------------- the loop


def _load_data(cfg: TrainConfig, spec: catalog.ModelSpec, dataset: str, hp: dict):
    info = catalog.DATASETS[dataset]
    size = cfg.image_size or hp.get("image_size")
    kw = dict(data_dir=cfg.data_dir, split="train", seed=cfg.seed, limit=cfg.limit)
    if info.paired:
        return data.load_domains(dataset, image_size=size or info.image_shape[0], **kw)
    if spec.two_domains:
        raise data.DatasetError(f"{dataset}: {spec.name} needs two domains (photo2sketch, or DIR/trainA + DIR/trainB)")
    if spec.conditional and not info.num_classes:
        raise data.DatasetError(f"{dataset}: {spec.name} needs class labels; use fashion-mnist or digits")
    if spec.edits and not info.attribute_names:
        raise data.DatasetError(f"{dataset}: {spec.name} needs attribute labels; use "
                                f"{', '.join(n for n, d in catalog.DATASETS.items() if d.attribute_names)}")
    return data.load_images(dataset, image_size=size, **kw)


def _run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.out) / cfg.model
    run = base / f"{stamp}-{cfg.profile}-s{cfg.seed}"
    n = 1
    while run.exists():
        run = base / f"{stamp}-{cfg.profile}-s{cfg.seed}-{n}"
        n += 1
    return run


def hardware(world: parallel.World = parallel.SINGLE) -> str:
    """This machine in words: the CUDA device, else the CPU model and thread count; and the process count
    of a data-parallel run."""
    procs = f"{world.size} processes x " if world.parallel else ""
    if torch.cuda.is_available():
        return f"GPU: {procs}{torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads()
    return f"CPU: {cpu_model()}, {procs}{threads} thread{'s' if threads != 1 else ''}"


def _versions() -> dict[str, str]:
    return {"ganexport": ganexport.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg.model``; returns the run directory. Raises DatasetError / CheckpointError on bad input.

    Under torchrun every process runs this; they train together (``parallel``) and rank 0 writes the run.
    """
    device = resolve_device(cfg.device)
    world = parallel.from_environment(device.type == "cuda")
    if world.parallel and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        if cfg.resume:  # a run goes on in the precision it started with
            cfg.precision = checkpoint.read_meta(cfg.resume).get("precision", "float32")
        if cfg.precision not in catalog.PRECISIONS:
            raise ValueError(f"precision {cfg.precision!r}: expected one of {', '.join(catalog.PRECISIONS)}")
        with default_dtype(getattr(torch, cfg.precision)):
            run_dir = _train(cfg, device, world)
    except BaseException:
        world.close(finished=False)  # no barrier: the other processes may never reach it
        raise
    world.close()
    return run_dir


@contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default float type set to ``dtype`` for the duration: the nets, the data (judge.to_tensor) and
    the random draws of a run all take it."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _train(cfg: TrainConfig, device: torch.device, world: parallel.World) -> Path:
    spec = catalog.get(cfg.model)
    resume_state, resume_ckpt = None, None
    if cfg.resume:
        resume_ckpt = checkpoint.load(cfg.resume)
        meta = resume_ckpt.meta
        if meta["model"] != cfg.model:
            raise checkpoint.CheckpointError(f"{cfg.resume}: a {meta['model']} checkpoint, not {cfg.model}")
        run_dir = Path(cfg.resume if Path(cfg.resume).is_dir() else Path(cfg.resume).parent)
        dataset, profile = meta["dataset"], meta["profile"]
        cfg.data_dir, cfg.seed = meta.get("data_dir"), meta["seed"]
        cfg.limit, cfg.image_size = meta.get("limit"), meta.get("image_size")
        # the run's own values; keys added to the catalog since it started take the value the run was
        # trained with where the catalog records one (hp_before), else the profile's default
        hp = {**spec.hp(profile), **resume_ckpt.hp}
        hp.update({k: v for k, v in cfg.hp.items() if v is not None})
        state_path = run_dir / "train_state.pt"
        resume_state = checkpoint.load_train_state(state_path) if state_path.exists() else None
    else:
        dataset = cfg.dataset or (data.detect_dataset(cfg.data_dir) if cfg.data_dir else spec.dataset)
        if spec.two_domains and dataset == "folder":
            raise data.DatasetError(f"{cfg.data_dir}: {spec.name} needs DIR/trainA and DIR/trainB image folders")
        profile = cfg.profile
        hp = spec.hp(profile, **cfg.hp)
        run_dir = world.broadcast(_run_dir(cfg) if world.is_main else None)
    if dataset not in catalog.DATASETS:
        raise data.DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(catalog.DATASETS)}")

    loaded = _load_data(cfg, spec, dataset, hp)
    arr = loaded.a if isinstance(loaded, data.DomainPair) else loaded.images
    image_shape = tuple(int(s) for s in arr.shape[1:])
    try:
        batches = Batches(loaded, hp["batch_size"], device, cfg.seed, world)
    except ValueError as e:
        raise data.DatasetError(str(e)) from None
    if cfg.epochs is not None:
        hp["steps"] = max(1, math.ceil(cfg.epochs * len(batches) / hp["batch_size"]))
    if cfg.steps is not None:
        hp["steps"] = cfg.steps

    recipe = family_class(spec)(spec, hp, image_shape, device, batches, cfg.seed)
    start = 0
    if resume_ckpt is not None:
        for role, net in recipe.nets.items():
            net.load_state_dict(resume_ckpt.state[role])
        start = resume_ckpt.meta["step"]
    # the checkpoint holds the averaged served nets; the raw weights the average follows are in train_state
    average = WeightAverage(recipe.nets, spec.serves.values(), hp["ema_decay"]) if hp.get("ema_decay") else None
    if resume_state:
        for role, opt in recipe.optimizers.items():
            opt.load_state_dict(resume_state["optimizers"][role])
        for role, state in resume_state.get("raw_nets", {}).items():
            recipe.nets[role].load_state_dict(state)
    say = (lambda message: _say(cfg, message)) if world.is_main else (lambda message: None)  # noqa: E731
    say(f"{spec.name}: data: {loaded.source}")
    if world.parallel:
        say(f"{spec.name}: {world.size} processes, each trains on {hp['batch_size'] // world.size} of the "
            f"{hp['batch_size']} rows of every batch")
    if resume_ckpt is not None:
        say(f"{spec.name}: {run_dir} already finished at step {start} of {hp['steps']}; nothing to train "
            f"(--steps N with N > {start} continues it)" if start >= hp["steps"] else
            f"{spec.name}: resuming {run_dir} from step {start} of {hp['steps']}")

    history_path = run_dir / "health.jsonl"
    meta = {
        "model": spec.name, "family": spec.family, "dataset": dataset,
        "data_dir": str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None,
        "data_source": loaded.source, "train_images": len(batches), "image_shape": list(image_shape),
        "class_names": list(catalog.DATASETS[dataset].class_names), "profile": profile, "hparams": hp,
        "seed": cfg.seed, "limit": cfg.limit, "image_size": cfg.image_size,
        "command": _command(cfg, resume_ckpt),
        "device": str(device), "hardware": hardware(world), "processes": world.size, "precision": cfg.precision,
        "versions": _versions(),
    }
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if getattr(loaded, "photos", None):
            photos.write_manifest(loaded.photos, run_dir / "photos.tsv")  # every photo trained on, with its licence

    num_classes = catalog.DATASETS[dataset].num_classes
    judge_net = None
    if spec.class_judged(dataset):
        judge_net = judge.load_judge(dataset, device=device)
        real_variety = _real_variety(batches, num_classes)
    wall0, wall_before = time.time(), (resume_ckpt.meta.get("wall_time_s", 0.0) if resume_ckpt else 0.0)

    def checkpoint_now(step: int, logs: dict[str, float]) -> dict[str, Any]:
        """Rank 0 writes the checkpoint, pictures and train state; the random streams every process shares
        go on untouched by what drawing the pictures takes from them."""
        if not world.is_main:
            return {}
        raw_nets = average.raw_state(recipe.nets) if average else {}
        with (average.in_place(recipe.nets) if average else nullcontext()), \
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            health = _save_pictures_and_checkpoint(step, logs)
        checkpoint.save_train_state(run_dir / "train_state.pt", {
            "optimizers": {r: o.state_dict() for r, o in recipe.optimizers.items()}, "raw_nets": raw_nets,
            "batch_rng": batches.generator.get_state(), "torch_rng": torch.get_rng_state(), "step": step})
        return health

    def _save_pictures_and_checkpoint(step: int, logs: dict[str, float]) -> dict[str, Any]:
        recipe.train_mode(False)
        with torch.no_grad():
            images, nrow = recipe.grid()
            health = (_class_health(recipe, judge_net, num_classes, cfg.seed, real_variety)
                      if judge_net is not None else {})
        recipe.train_mode(True)
        save_grid(images, nrow, run_dir / "samples" / f"step_{step:06d}.png")
        save_grid(images, nrow, run_dir / "samples.png")
        full_meta = {**meta, **recipe.extra_meta(), "step": step, "metrics": {**logs, **health},
                     "wall_time_s": round(wall_before + time.time() - wall0, 1)}
        checkpoint.save(run_dir / "checkpoint.safetensors", recipe.nets, full_meta)
        return health

    def draw_curves() -> None:
        """loss_curve.png from health.jsonl: after each checkpoint's record is written, so it ends at that step."""
        save_loss_curves(history_path, run_dir / "loss_curve.png", title=f"{spec.name} ({profile})")

    if resume_state:  # last, so nothing built above (e.g. the judge's init) shifts the random streams
        batches.generator.set_state(resume_state["batch_rng"])
        torch.set_rng_state(resume_state["torch_rng"])
    total = hp["steps"]
    recipe.train_mode(True)
    window: dict[str, list[float]] = {}
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"{spec.name} [{profile}]",
               unit="step", disable=None if cfg.progress and world.is_main else True, dynamic_ncols=True)
    # tqdm draws nothing when stderr is not a terminal (nohup, CI, a log file): print plain lines instead
    plain = (PlainProgress(f"{spec.name} [{profile}]", start, total)
             if cfg.progress and world.is_main and bar.disable else None)
    logs: dict[str, float] = {}
    with (history_path.open("a") if world.is_main else nullcontext()) as history:
        for step in bar:
            set_learning_rate(recipe.optimizers.values(), hp["lr"] * lr_factor(step, total, hp.get("lr_decay_start")))
            out = recipe.train_step(batches.draw)
            if average:
                average.update(recipe.nets, step)
            for k, v in out.items():
                window.setdefault(k, []).append(v)
            done = step + 1
            if done % hp["log_every"] == 0 or done == total:
                logs = world.mean_of({k: float(np.mean(v)) for k, v in window.items()})
                window.clear()
                bar.set_postfix({k.removeprefix("loss_"): f"{v:.3g}" for k, v in logs.items() if k.startswith("loss")})
                health = {}
                if done % hp["sample_every"] == 0 or done == total:
                    health = checkpoint_now(done, logs)
                if plain is not None:
                    plain.update(done, logs)
                if not world.is_main:
                    continue
                record = {"step": done, **logs, **health}
                history.write(json.dumps(record) + "\n")
                history.flush()
                if done % hp["sample_every"] == 0 or done == total:  # drawn with this step's record
                    draw_curves()
                for w in health_warnings(logs, health.get("classes_present"), num_classes,
                                         health.get("class_variety")):
                    tqdm.write(f"[{spec.name} step {done}] warning: {w}")
    if start >= total:  # resumed a finished run: still leave fresh pictures
        checkpoint_now(total, logs)
        if world.is_main:
            draw_curves()
    return run_dir


def _command(cfg: TrainConfig, resumed: checkpoint.Checkpoint | None) -> str:
    """How the run was made: this command, after the one that started it when it was resumed (so a
    checkpoint trained in two parts still says its whole recipe)."""
    current = cfg.command or shlex.join(sys.argv)
    before = resumed.meta.get("command") if resumed is not None else None
    if not before or before == current or before.endswith(" && " + current):
        return before or current
    return f"{before} && {current}"


def _say(cfg: TrainConfig, message: str) -> None:
    """A line for the person running the training (not with --quiet)."""
    if cfg.progress:
        tqdm.write(message)


class PlainProgress:
    """Progress as plain lines, about every 5% of the run: step, rate, time left and the losses.

    For runs whose stderr is not a terminal, where a progress bar would print
    nothing (tqdm) or a mess of carriage returns.
    """

    def __init__(self, desc: str, start: int, total: int, lines: int = 20):
        self.desc, self.start, self.total = desc, start, total
        self.every = max(1, (total - start) // lines)
        self.t0, self.next = time.time(), start + self.every

    def update(self, done: int, logs: dict[str, float]) -> None:
        if done < self.next and done != self.total:
            return
        self.next = done + self.every
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = (done - self.start) / elapsed
        left = (self.total - done) / rate if rate > 0 else float("inf")
        losses = " ".join(f"{k.removeprefix('loss_')} {v:.3g}" for k, v in logs.items() if k.startswith("loss"))
        tqdm.write(f"{self.desc} step {done}/{self.total} ({done / self.total:.0%}), {rate:.2f} steps/s, "
                   f"{left / 60:.1f} min left; {losses}")


def lr_factor(step: int, total: int, decay_start: float | None) -> float:
    """1 until ``decay_start`` (a fraction of the run), then linearly towards 0 at the end of the run.

    CycleGAN's schedule (constant, then linear decay): a GAN's losses keep
    oscillating at a constant rate, and the decay lets the last weights settle.
    Families without ``lr_decay_start`` in their profile keep a constant rate.
    """
    if decay_start is None or decay_start >= 1.0:
        return 1.0
    first = decay_start * total
    return 1.0 if step < first else max(0.0, 1.0 - (step - first) / max(1.0, total - first))


def set_learning_rate(optimizers, lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def _real_variety(batches: Batches, num_classes: int) -> float:
    """``within_class_l1`` of 1k training images: what a generator's samples are compared with."""
    if "y" not in batches.tensors:
        return float("nan")
    n = len(batches.tensors["x"])
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:1000]  # its own stream, not training's
    x, y = batches.tensors["x"].cpu()[idx], batches.tensors["y"].cpu()[idx]
    return within_class_l1((x + 1) / 2, y, num_classes)


def _class_health(recipe: Family, judge_net, num_classes: int, seed: int, real_variety: float) -> dict[str, Any]:
    """Class histogram of 1k samples judged by the classifier; for cGAN also how often the asked class came out;
    and how much samples of one class differ, against real images (``class_variety``; 1 = as much as real)."""
    gen = torch.Generator().manual_seed(seed + 2)
    images, asked = recipe.samples(1000, gen)
    pred = judge.predict(judge_net, images)
    hist = torch.bincount(pred.cpu(), minlength=num_classes).tolist()
    out = {"class_histogram": hist, "classes_present": int(sum(h > 0 for h in hist))}
    if asked is not None:
        out["label_accuracy"] = float((pred == asked).float().mean())
    variety = within_class_l1((images.cpu() + 1) / 2, (asked if asked is not None else pred).cpu(), num_classes)
    if math.isfinite(variety) and real_variety > 0:
        out["class_variety"] = variety / real_variety
    return out
