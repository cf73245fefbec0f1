"""Quality metrics for trained models: a registry whose names say the protocol.

Each metric is a function of a checkpoint; its name says what is compared with
what and on how many images (``fid_fmnist10k``: Frechet distance, Fashion-MNIST,
10k images), as stylegan3's metric names do. ``evaluate`` runs the metrics that
apply to a model and appends one JSON line per metric beside the checkpoint
(``weights/dcgan.eval.jsonl``, or ``runs/dcgan/<run>/eval.jsonl``), so every
figure in a model card or the docs can be traced to a run of:

    ganexport eval --model dcgan                  # every metric that applies
    ganexport eval --model cgan --metrics cgan_acc --n 2000

Images are scored the way they are served: generator output rounded to uint8
exactly as the exported graph does, then read back by the judge classifier
(``training/judge.py``) whose penultimate layer gives the FID features.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ganexport import catalog, diffusion
from ganexport.sketch import luminance, sobel_sketch, stroke_f1, stroke_mask
from ganexport.training import checkpoint, data, judge, latent_metrics, photos
from ganexport.training.nets import to_uint8, translate_photo
from ganexport.training.unet import numpy_eps_fn

BATCH = 500
DIFFUSION_STEPS = 50  # DDIM steps a diffusion model is measured at unless --steps says otherwise


# --------------------------------------------------------------------------- what a metric sees


class Context:
    """One checkpoint under evaluation: its nets, data and judge, each loaded once on first use."""

    def __init__(self, ckpt: checkpoint.Checkpoint, *, n: int | None = None, seed: int = 0, device="cpu",
                 data_dir: str | None = None, steps: int | None = None, guidance: float | None = None):
        self.ckpt, self.n, self.seed, self.device = ckpt, n, seed, torch.device(device)
        self.spec = ckpt.spec
        if self.spec.kind != "diffuse" and (steps is not None or guidance is not None):
            raise ValueError(f"{self.spec.name}: --steps and --guidance are for diffusion models")
        # how a diffusion model is sampled: DDIM (eta 0), its steps and guidance scale, recorded with each figure
        self.sampler = None if self.spec.kind != "diffuse" else {
            "steps": steps or DIFFUSION_STEPS, "guidance": float(ckpt.hp["guidance"] if guidance is None else guidance),
            "eta": 0.0}
        if self.sampler is not None:
            self.sampler["default"] = (self.sampler["steps"] == DIFFUSION_STEPS
                                       and self.sampler["guidance"] == float(ckpt.hp["guidance"]))
        self.dataset = ckpt.meta["dataset"]
        # a run on the user's own folder is measured on that folder's held-out part (its testA/testB)
        self.data_dir = data_dir or ckpt.meta.get("data_dir")
        self._cache: dict[str, Any] = {}

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def net(self, role: str) -> torch.nn.Module:
        return self.once(f"net:{role}", lambda: self.ckpt.build(role).to(self.device))

    @property
    def judge(self):
        return self.once("judge", lambda: judge.load_judge(self.dataset, device=self.device))

    def real(self, split: str) -> data.ImageSet:
        return self.once(f"real:{split}", lambda: data.load_images(self.dataset, data_dir=self.data_dir, split=split,
                                                                image_size=self.ckpt.image_shape[0]))

    def domains(self) -> data.DomainPair:
        return self.once("domains", lambda: data.load_domains(self.dataset, data_dir=self.data_dir, split="test",
                                                                  image_size=self.ckpt.image_shape[0]))

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | None = None) -> np.ndarray:
        """``n`` uint8 NHWC samples from the served net, latents from its prior, fixed seed."""
        if self.sampler is not None:
            return self.diffuse(n, labels)
        role = self.spec.signatures(self.ckpt.image_shape, self.ckpt.hp)[0].net
        net, gen, latent = self.net(role), self.generator(), self.ckpt.hp["latent_dim"]
        mean, std = map(torch.tensor, self.ckpt.latent_prior or ([0.0] * latent, [1.0] * latent))
        out = []
        for i in range(0, n, BATCH):
            z = (torch.randn(min(BATCH, n - i), latent, generator=gen) * std + mean).to(self.device)
            if labels is None:
                x = net(z)
            else:
                x = net(z, torch.from_numpy(labels[i:i + len(z)]).long().to(self.device))
            out.append(to_uint8(x).cpu().numpy())
        return np.concatenate(out)

    def diffuse(self, n: int, labels: np.ndarray | None = None, chunk: int = 1000) -> np.ndarray:
        """``n`` samples of a diffusion model by the served sampler loop at ``self.sampler``'s settings;
        ``labels`` None samples with no class. Seeded noise, drawn in order, so ``n`` samples are the first
        ``n`` of any larger draw with the same labels: metrics that share a sample pay for it once."""
        null = self.spec.signatures(self.ckpt.image_shape, self.ckpt.hp)[0].diffusion["null_label"]
        labels = np.full(n, null, np.int64) if labels is None else np.asarray(labels, np.int64)
        kind = "none" if (labels == null).all() else "asked"
        cached = self._cache.get(f"diffuse:{kind}")
        if cached is not None and len(cached[0]) >= n and np.array_equal(cached[0][:n], labels):
            return cached[1][:n]
        noise = np.random.default_rng(self.seed).standard_normal((n, *self.ckpt.image_shape), dtype=np.float32)
        eps = numpy_eps_fn(self.net("denoiser"), batch_size=BATCH)
        schedule = diffusion.Schedule(self.ckpt.hp["timesteps"])
        out = []
        for i in tqdm(range(0, n, chunk), desc=f"{self.spec.name} sampling ({self.sampler['steps']} steps)",
                      unit="chunk", leave=False, mininterval=30, disable=n <= chunk):
            out.append(diffusion.sample(eps, schedule, noise[i:i + chunk], labels[i:i + chunk], null,
                                        steps=self.sampler["steps"], guidance=self.sampler["guidance"]).images)
        images = np.concatenate(out)
        self._cache[f"diffuse:{kind}"] = (labels, images)
        return images

    @torch.no_grad()
    def translate(self, role: str, images: np.ndarray) -> np.ndarray:
        net = self.net(role)
        return np.concatenate([to_uint8(net(judge.to_tensor(images[i:i + 16], self.device))).cpu().numpy()
                               for i in range(0, len(images), 16)])

    def translate_whole(self, role: str, image: np.ndarray) -> np.ndarray:
        """One uint8 HxWxC image of any size through the served graph's own pad-and-crop."""
        return translate_photo(self.net(role), image)

    def held_out_photos(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return self.once("held_out", photos.held_out)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """The judge's penultimate-layer features (the FID embedding)."""
        x = judge.to_tensor(images, self.device)
        return torch.cat([self.judge.features(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]).double().cpu().numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return judge.predict(self.judge, judge.to_tensor(images, self.device)).cpu().numpy()


# --------------------------------------------------------------------------- measures


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) between two feature sets (rows = images).

    tr((S1 S2)^1/2) is the sum of square roots of the eigenvalues of S1 S2,
    which are real and non-negative for covariance matrices (numpy only).
    """
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def laplacian_variance(images: np.ndarray) -> float:
    """Mean over images of the variance of the 3x3 Laplacian of the gray image in [0, 1].

    Blurry images have little high-frequency energy, so a low value; the seed
    notes' point that autoencoders blur and GANs are sharp becomes a number.
    """
    x = torch.from_numpy(images).float().mean(-1, keepdim=True).permute(0, 3, 1, 2) / 255.0
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(F.conv2d(x, kernel).flatten(1).var(1).mean())


def within_class_l1(images: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int = 50) -> float:
    """Mean L1 between two different images of one class (pixels in [0, 1]), averaged over the classes.

    The class histogram cannot see a generator that draws one garment per class;
    this can: for real images it is about 0.19 on Fashion-MNIST, for a collapsed
    class 0. At most ``per_class`` images of each class are compared pairwise.
    Returns NaN when no class has two images.
    """
    per = []
    for c in range(num_classes):
        x = images[labels == c][:per_class].flatten(1).double()
        if len(x) >= 2:
            per.append(float(torch.cdist(x, x, p=1).sum() / (len(x) * (len(x) - 1) * x.shape[1])))
    return float(np.mean(per)) if per else float("nan")


def mean_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference on a 0..1 scale."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    applies: Callable[[catalog.ModelSpec, str], bool]  # (spec, dataset) -> bool
    run: Callable[[Context], dict[str, Any]]
    default_n: int | None = None  # images it draws, when the protocol fixes a count


def fid_fmnist10k(ctx: Context) -> dict[str, Any]:
    n = ctx.n or 10_000
    test = ctx.real("test").images[:10_000]
    f_test = ctx.features(test)
    floor = ctx.once("fid_floor", lambda: frechet_distance(ctx.features(ctx.real("train").images[:len(test)]), f_test))
    fid = frechet_distance(ctx.features(ctx.sample(n, _balanced_labels(ctx, n))), f_test)
    return {"fid": fid, "floor_train_vs_test": floor, "n_generated": n, "n_test": len(test)}


def _balanced_labels(ctx: Context, n: int) -> np.ndarray | None:
    """Conditional models are sampled with every class equally often; others take no label."""
    return np.arange(n) % ctx.judge.head.out_features if ctx.spec.conditional else None


def cgan_acc(ctx: Context) -> dict[str, Any]:
    n = ctx.n or 10_000
    asked = _balanced_labels(ctx, n)
    pred = ctx.predict(ctx.sample(n, asked))
    names = catalog.DATASETS[ctx.dataset].class_names
    per = {names[c]: float((pred[asked == c] == c).mean()) for c in range(len(names))}
    return {"accuracy": float((pred == asked).mean()), "per_class": per, "n": n,
            "judge_test_accuracy": ctx.once("judge_acc", lambda: judge.accuracy(
                ctx.judge, ctx.real("test").images, ctx.real("test").labels, ctx.device))}


def class_coverage(ctx: Context) -> dict[str, Any]:
    n = 1000  # the protocol: 1k unconditional samples
    pred = ctx.predict(ctx.sample(n))
    k = ctx.judge.head.out_features
    hist = np.bincount(pred, minlength=k)
    p = hist / n
    return {"classes_present": int((hist > 0).sum()), "num_classes": k, "histogram": hist.tolist(),
            "largest_class_share": float(p.max()),
            "kl_from_uniform": float(sum(pi * np.log(pi * k) for pi in p if pi > 0)), "n": n}


def class_variety(ctx: Context) -> dict[str, Any]:
    n = 1000  # the protocol: 1k samples, 1k real test images, at most 50 of each class compared pairwise
    k = ctx.judge.head.out_features
    asked = _balanced_labels(ctx, n)
    fake = ctx.sample(n, asked)
    labels = asked if asked is not None else ctx.predict(fake)
    test = ctx.real("test")
    as_unit = lambda a: torch.from_numpy(a).float() / 255.0  # noqa: E731
    gen = within_class_l1(as_unit(fake), torch.from_numpy(labels), k)
    ref = within_class_l1(as_unit(test.images[:n]), torch.from_numpy(test.labels[:n]), k)
    return {"generated": gen, "real": ref, "ratio_to_real": gen / ref, "n": n,
            "grouped_by": "asked class" if asked is not None else "judged class"}


def sharpness(ctx: Context) -> dict[str, Any]:
    n = min(ctx.n or 10_000, 10_000)
    real = ctx.real("test").images[:n]
    fake = ctx.sample(n, _balanced_labels(ctx, n))
    gen, ref = laplacian_variance(fake), laplacian_variance(real)
    return {"generated": gen, "real": ref, "ratio_to_real": gen / ref, "n": n}


def sketch_l1(ctx: Context) -> dict[str, Any]:
    pair = ctx.domains()
    photo, truth = pair.a, pair.b
    gray = np.repeat(np.rint(photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None], 3, -1)
    baselines = {"grayscale_photo": mean_l1(gray, truth), "blank_page": mean_l1(np.full_like(truth, 255), truth)}
    l1 = mean_l1(ctx.translate("g_ab", photo), truth)
    best = min(baselines.values())
    return {"l1": l1, "baselines": baselines, "ratio_to_best_baseline": l1 / best, "n": len(photo),
            "data": pair.source}


def score_sketches(draw: Callable[[np.ndarray], np.ndarray],
                   held_out: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Stroke F1 (1-pixel tolerance) and L1 of ``draw(photo)`` against the filter, over whole photos.

    ``f1`` is the mean over photos; ``l1_ratio`` is the mean L1 over the mean
    L1 of a blank page on the same photos (1 = no better than drawing nothing).
    """
    scores, l1, blank, share = [], [], [], []
    for _, photo, truth in held_out:
        drawn = draw(photo)
        scores.append(stroke_f1(drawn, truth))
        l1.append(mean_l1(drawn, truth))
        blank.append(mean_l1(np.full_like(truth, 255), truth))
        share.append(float(stroke_mask(drawn).mean()))
    mean = lambda key: float(np.mean([s[key] for s in scores]))  # noqa: E731
    return {"f1": mean("f1"), "precision": mean("precision"), "recall": mean("recall"),
            "l1": float(np.mean(l1)), "l1_ratio": float(np.mean(l1) / np.mean(blank)),
            "stroke_share": float(np.mean(share)), "per_photo_f1": [round(s["f1"], 4) for s in scores]}


def sketch_f1_512(ctx: Context) -> dict[str, Any]:
    held_out = ctx.held_out_photos()
    gray = lambda p: np.repeat(luminance(p)[..., None], 3, -1)  # noqa: E731
    model = score_sketches(lambda p: ctx.translate_whole("g_ab", p), held_out)
    baselines = {name: score_sketches(fn, held_out) for name, fn in (
        ("blank_page", lambda p: np.full_like(p, 255)), ("grayscale_photo", gray), ("sobel_edges", sobel_sketch))}
    truth_share = float(np.mean([stroke_mask(t).mean() for _, _, t in held_out]))
    return {**model, "filter_stroke_share": truth_share, "n_photos": len(held_out),
            "photos": [name for name, _, _ in held_out], "long_side": photos.LONG_SIDE,
            "baselines": {k: {m: v[m] for m in ("f1", "l1_ratio", "precision", "recall")}
                          for k, v in baselines.items()}}


def photo_l1_512(ctx: Context) -> dict[str, Any]:
    """G_B->A on the filter's sketch of each held-out photo, against the photo itself."""
    held_out = ctx.held_out_photos()
    out, as_is, flat = [], [], []
    for _, photo, sketch in held_out:
        out.append(mean_l1(ctx.translate_whole("g_ba", sketch), photo))
        as_is.append(mean_l1(sketch, photo))
        flat.append(mean_l1(np.broadcast_to(photo.reshape(-1, 3).mean(0).round(), photo.shape), photo))
    return {"l1": float(np.mean(out)), "n_photos": len(held_out), "long_side": photos.LONG_SIDE,
            "baselines": {"sketch_itself": float(np.mean(as_is)), "mean_colour_page": float(np.mean(flat))}}


def cycle_l1(ctx: Context) -> dict[str, Any]:
    pair = ctx.domains()
    aba = ctx.translate("g_ba", ctx.translate("g_ab", pair.a))
    bab = ctx.translate("g_ab", ctx.translate("g_ba", pair.b))
    return {"a_b_a": mean_l1(aba, pair.a), "b_a_b": mean_l1(bab, pair.b), "n": len(pair.a), "data": pair.source}


def _photo_sketch(spec: catalog.ModelSpec, dataset: str) -> bool:
    """A two-way translator trained on photo2sketch: its sketches can be scored against the filter."""
    return spec.two_domains and dataset == "photo2sketch"


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("fid_fmnist10k", "Frechet distance, judge features, N generated vs the 10k Fashion-MNIST test images "
           "(floor: 10k train vs test)", lambda s, d: s.class_judged(d) and d == "fashion-mnist",
           fid_fmnist10k, 10_000),
    Metric("cgan_acc", "judge accuracy on conditional samples, per requested class and overall",
           lambda s, d: s.conditional and s.class_judged(d), cgan_acc, 10_000),
    Metric("class_coverage", "classes present among 1k unconditional samples (a diffusion model: with no class), "
           "and the histogram", lambda s, d: s.class_judged(d) and s.samples_unconditionally, class_coverage, 1000),
    Metric("class_variety", "mean L1 between two of 1k samples of one class (cgan: asked, others: judged) over the "
           "same for real test images (mode collapse inside a class shows as a low ratio)",
           lambda s, d: s.class_judged(d), class_variety, 1000),
    Metric("sharpness", "mean Laplacian variance of samples vs real test images (blur shows as a low ratio)",
           lambda s, d: s.kind in ("sample", "diffuse"), sharpness, 10_000),
    Metric("sketch_l1", "L1 of G_A->B(photo) vs the true pencil-sketch filter on 200 crops of the held-out photos, "
           "with the trivial baselines (grayscale photo, blank page)",
           _photo_sketch, sketch_l1),
    Metric("sketch_f1_512", "stroke F1 (pixels < 0.8, 1-pixel tolerance) and L1 over the blank page's L1 of "
           "G_A->B(photo) vs the pencil-sketch filter, on whole held-out photos at 512 px on the longer side, "
           "with baselines (blank page, grayscale photo, Sobel edges)",
           _photo_sketch, sketch_f1_512),
    Metric("photo_l1_512", "L1 of G_B->A(filter sketch) vs the photo, whole held-out photos at 512 px, with "
           "baselines (the sketch itself, a page of the photo's mean colour)",
           _photo_sketch, photo_l1_512),
    Metric("cycle_l1", "reconstruction L1 of A->B->A and B->A->B on held-out crops",
           lambda s, d: s.two_domains, cycle_l1),
    Metric("attr_edit", "per attribute, the share of held-out faces without it that the attribute judge sees with "
           "it after an edit of strength 1 (its vector added to the latent), and the share of the other "
           "attributes it sees as before; also faces with it at strength -1",
           lambda s, d: s.edits and bool(catalog.DATASETS[d].attribute_names), latent_metrics.attr_edit),
    Metric("recon_faces2k", "the 2k held-out faces through encoder (mean) and decoder: pixel L1 (0..1), the share "
           "of attributes the judge sees alike in face and reconstruction, sharpness of reconstructions vs faces",
           lambda s, d: s.encoder is not None and bool(catalog.DATASETS[d].attribute_names),
           latent_metrics.recon_faces2k),
    Metric("fid_faces2k", "Frechet distance, attribute-judge features, N random decodes vs N held-out faces "
           "(default: all 2000; floor: as many train faces vs them)",
           lambda s, d: s.kind == "sample" and bool(catalog.DATASETS[d].attribute_names),
           latent_metrics.fid_faces2k, 2000),
)}


def applicable(ckpt_meta: dict[str, Any]) -> list[str]:
    spec = catalog.get(ckpt_meta["model"])
    return [name for name, m in METRICS.items() if m.applies(spec, ckpt_meta["dataset"])]


def results_path(checkpoint_path: Path) -> Path:
    """Where the JSON lines of a checkpoint's evaluations go: beside it."""
    p = Path(checkpoint_path)
    return p.parent / "eval.jsonl" if p.name == "checkpoint.safetensors" else p.with_suffix(".eval.jsonl")


def evaluate(checkpoint_path: Path, metrics: list[str] | None = None, *, n: int | None = None, seed: int = 0,
             device="cpu", data_dir: str | None = None, steps: int | None = None, guidance: float | None = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run ``metrics`` (default: every one that applies) on a checkpoint; append and return the records.

    Data come from ``data_dir``, else the folder the run recorded, else the dataset's own files."""
    ckpt = checkpoint.load(checkpoint_path)
    names = metrics or applicable(ckpt.meta)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    unfit = [m for m in names if m not in applicable(ckpt.meta)]
    if unfit:
        raise ValueError(f"{', '.join(unfit)} do(es) not apply to {ckpt.meta['model']} on {ckpt.meta['dataset']}; "
                         f"applicable: {', '.join(applicable(ckpt.meta))}")
    ctx = Context(ckpt, n=n, seed=seed, device=device, data_dir=data_dir, steps=steps, guidance=guidance)
    records = []
    out = results_path(checkpoint_path)
    for name in names:
        t0 = time.time()
        result = METRICS[name].run(ctx)
        record = {"metric": name, "model": ckpt.meta["model"], "checkpoint": Path(checkpoint_path).name,
                  "step": ckpt.meta.get("step"), "seed": seed, "results": result,
                  "seconds": round(time.time() - t0, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  **({"sampler": ctx.sampler} if ctx.sampler else {})}
        with out.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        log(f"{name}{sampler_note(record)}: {headline(record)}")
        records.append(record)
    return records


def headline(record: dict[str, Any]) -> str:
    """The one-line summary of a record that tables and cards show."""
    r = record["results"]
    return {
        "fid_fmnist10k": lambda: f"{r['fid']:.2f} (floor {r['floor_train_vs_test']:.2f}, n={r['n_generated']})",
        "cgan_acc": lambda: f"{r['accuracy']:.3f} (worst class {min(r['per_class'].values()):.2f})",
        "class_coverage": lambda: (f"{r['classes_present']}/{r['num_classes']} "
                                   f"(largest share {r['largest_class_share']:.2f})"),
        "class_variety": lambda: f"{r['generated']:.3f} vs real {r['real']:.3f} (ratio {r['ratio_to_real']:.2f})",
        "sharpness": lambda: f"{r['generated']:.4f} vs real {r['real']:.4f} (ratio {r['ratio_to_real']:.2f})",
        "sketch_l1": lambda: (f"{r['l1']:.4f} (blank page {r['baselines']['blank_page']:.4f}, "
                              f"grayscale {r['baselines']['grayscale_photo']:.4f}; "
                              f"ratio {r['ratio_to_best_baseline']:.2f})"),
        "cycle_l1": lambda: f"A-B-A {r['a_b_a']:.4f}, B-A-B {r['b_a_b']:.4f}",
        "sketch_f1_512": lambda: (f"F1 {r['f1']:.2f}, L1 {r['l1_ratio']:.2f}x blank page (Sobel edges F1 "
                                  f"{r['baselines']['sobel_edges']['f1']:.2f}, grayscale "
                                  f"{r['baselines']['grayscale_photo']['f1']:.2f}; {r['n_photos']} photos)"),
        "photo_l1_512": lambda: (f"{r['l1']:.4f} (the sketch itself {r['baselines']['sketch_itself']:.4f}, "
                                 f"mean-colour page {r['baselines']['mean_colour_page']:.4f})"),
        **{name: (lambda name=name: latent_metrics.headline(name, r))
           for name in ("attr_edit", "recon_faces2k", "fid_faces2k")},
    }[record["metric"]]()


def sampler_note(record: dict[str, Any]) -> str:
    """" (25 steps, guidance 2)" for a diffusion model's record; nothing for the others."""
    s = record.get("sampler")
    return f" ({s['steps']} steps, guidance {s['guidance']:g})" if s else ""


def records(checkpoint_path: Path) -> list[dict[str, Any]]:
    """Every record evaluated on a checkpoint, oldest first (empty when none)."""
    path = results_path(checkpoint_path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest(checkpoint_path: Path) -> dict[str, dict[str, Any]]:
    """The newest record of each metric evaluated on a checkpoint (empty when none); for a diffusion
    model, at its default sampler settings (the other settings are in ``sampler_sweep``)."""
    return {rec["metric"]: rec for rec in records(checkpoint_path) if rec.get("sampler", {}).get("default", True)}


def sampler_sweep(checkpoint_path: Path) -> dict[tuple[int, float], dict[str, dict[str, Any]]]:
    """A diffusion model's newest record of each metric at each (steps, guidance) it was measured at."""
    out: dict[tuple[int, float], dict[str, dict[str, Any]]] = {}
    for rec in records(checkpoint_path):
        if "sampler" in rec:
            out.setdefault((rec["sampler"]["steps"], rec["sampler"]["guidance"]), {})[rec["metric"]] = rec
    return dict(sorted(out.items()))
