"""The model catalog: every model is declared here once, and everything else derives from it.

A ``ModelSpec`` says what a training model is (family, default dataset, nets,
hyper-parameters per profile) and which Triton models it publishes, with their
serving signatures. Export (ONNX input names, dynamic axes), config.pbtxt,
clients, input validation, demo widgets, tests and benchmarks all read tensor
names and shapes from here; typing one of them anywhere else is a defect.

This module imports neither torch nor numpy, so serving and the demo can read
signatures without the training stack. Nets are named by dotted path and
resolved lazily by ``ModelSpec.build``.

    >>> from ganexport import catalog
    >>> spec = catalog.get("cgan")
    >>> [t.name for t in spec.signatures()[0].inputs]
    ['z', 'label']
    >>> spec.signatures()[0].outputs[0].shape
    (28, 28, 1)
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

PROFILES = ("smoke", "quick", "full")
# The float types a run can train in (`train --precision`); float32 unless a check needs float64's rounding.
PRECISIONS = ("float32", "float64")


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data: image shape and class names."""

    name: str
    image_shape: tuple[int, int, int]  # H, W, C of the training images
    class_names: tuple[str, ...] = ()
    paired: bool = False  # two unpaired domains (CycleGAN) instead of one image set
    description: str = ""
    # Binary labels every image carries (several at once, unlike classes): what an "edit" model can add or remove.
    attribute_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("fashion-mnist", (28, 28, 1), FASHION_MNIST_CLASSES,
                    description="Fashion-MNIST: 60k train / 10k test 28x28 grayscale garments, 10 classes"),
        DatasetInfo("digits", (8, 8, 1), tuple(str(i) for i in range(10)),
                    description="scikit-learn's 1797 8x8 handwritten digits (fast tests)"),
        DatasetInfo("folder", (64, 64, 3),
                    description="a folder of your own images, resized and centre-cropped"),
        DatasetInfo("photo2sketch", (96, 96, 3), paired=True,
                    description="the photo2sketch set: A = 96x96 crops of about 360 real photographs that ship "
                                "in Debian packages and the scikit-image / scikit-learn wheels, at 512 px on the "
                                "longer side; B = crops of *other* photos through a fixed pencil-sketch filter "
                                "(the sketch domain is made by a filter, not drawn by people)"),
        DatasetInfo("cyclegan-folder", (64, 64, 3), paired=True,
                    description="your own CycleGAN layout: DIR/trainA, DIR/trainB (testA, testB optional)"),
        DatasetInfo("faces", (64, 64, 3),
                    description="30k train / 2k held-out 64x64 cartoon faces drawn offline by DiceBear's avataaars "
                                "style (free for personal and commercial use), labelled exactly by the options each "
                                "was drawn with (ganexport/faces.py)",
                    attribute_names=("smiling", "glasses", "beard", "moustache", "hat", "bald", "eyes_closed")),
    )
}


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a served model. ``shape`` excludes the implicit batch dim; -1 is dynamic."""

    name: str
    dtype: str  # Triton's names: "FP32", "INT64", "UINT8"
    shape: tuple[int, ...]
    low: float | None = None  # inclusive value range, where one applies (labels)
    high: float | None = None
    doc: str = ""

    @property
    def numpy_dtype(self) -> str:
        return {"FP32": "float32", "INT64": "int64", "UINT8": "uint8", "INT32": "int32"}[self.dtype]

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        """Indices (batch dim included as 0) that vary between requests."""
        return (0,) + tuple(i + 1 for i, d in enumerate(self.shape) if d == -1)


@dataclass(frozen=True)
class Signature:
    """One Triton model: what it is called, what goes in and what comes out.

    ``net`` names the module of the training model that it serves (e.g. the
    generator, the VAE decoder, CycleGAN's A->B generator); ``kind`` is
    "sample" (latent -> image), "translate" (image -> image) or "diffuse" (noise and
    sampler settings -> image), its ModelSpec's kind, or, for an autoencoder's
    other published models, "encode" (image -> latent, ``net`` the encoder) or "edit"
    (image and one strength per name in ``attributes`` -> image, ``net`` the decoder, after
    the spec's encoder). A "diffuse" model's file holds
    only its denoiser (``denoiser()`` is that file's signature, kind "denoise"); the
    sampling loop (ganexport.diffusion) runs around it, and ``diffusion`` carries what
    the loop needs: the training ``timesteps``, the ``null_label`` (None where the model has no
    "no class" label) and the trajectory's ``frames``; for an imported diffusers pipeline also ``ddim``,
    the scheduler config its loop reproduces, and the ``guidance`` it is sampled at by default.
    """

    name: str
    kind: str
    net: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    max_image_side: int | None = None  # translators: largest accepted H or W
    min_image_side: int | None = None
    description: str = ""
    diffusion: Mapping[str, Any] | None = None
    attributes: tuple[str, ...] = ()  # an "edit" model's attributes, in the order of its strength vector

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    def diffusion_inputs(self) -> tuple[TensorSpec, TensorSpec | None, TensorSpec, TensorSpec, TensorSpec]:
        """(noise, label, steps, guidance, eta) of a "diffuse" signature; label is None for a model that takes
        no class (an imported unconditional pipeline)."""
        if self.diffusion is None:
            raise ValueError(f"{self.name}: a {self.kind} model has no sampler inputs")
        noise, *rest = self.inputs
        label = rest.pop(0) if len(rest) == 4 else None
        steps, guidance, eta = rest
        return noise, label, steps, guidance, eta

    def denoiser(self) -> "Signature":
        """What a "diffuse" model's exported file computes, one step's estimate: x (noisy image, NHWC float),
        t (timestep index), label (the class, or ``null_label``; only where the model takes one) -> eps (or, for
        an imported pipeline, what its UNet predicts: DENOISER_OUTPUTS)."""
        if self.diffusion is None:
            raise ValueError(f"{self.name}: a {self.kind} model has no denoiser")
        image = self.outputs[0].shape
        d = self.diffusion
        label = self.diffusion_inputs()[1]
        labels = () if label is None else (TensorSpec(label.name, "INT64", (1,), 0, label.high, label.doc),)
        out, doc = DENOISER_OUTPUTS[(d.get("ddim") or {}).get("prediction_type", "epsilon")]
        return Signature(
            name=f"{self.name}_denoiser", kind="denoise", net=self.net,
            inputs=(TensorSpec("x", "FP32", image, doc="noisy image x_t, NHWC float"),
                    TensorSpec("t", "FP32", (1,), 0, d["timesteps"] - 1, "timestep index"), *labels),
            outputs=(TensorSpec(out, "FP32", image, doc=doc),),
            max_batch_size=2 * self.max_batch_size,  # classifier-free guidance doubles each batch
            description=f"{self.name}'s denoiser: one step of its sampler",
        )

    def for_runtime(self, runtime: str) -> "Signature":
        """The same signature under the name it is published with for ``runtime``."""
        return replace(self, name=self.name + RUNTIME_SUFFIX[runtime])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, written beside a published model as signature.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Signature":
        tensors = lambda items: tuple(TensorSpec(**{**t, "shape": tuple(t["shape"])}) for t in items)  # noqa: E731
        return cls(**{**d, "inputs": tensors(d["inputs"]), "outputs": tensors(d["outputs"]),
                      "attributes": tuple(d.get("attributes", ()))})


# Trajectory snapshots a diffusion model returns on request, whatever its number of steps.
TRAJECTORY_FRAMES = 10
# What a diffusion model's denoiser file returns (its output's name and doc), by what its net predicts: the
# models ganexport trains return the noise; an imported diffusers UNet, its config's ``prediction_type``.
DENOISER_OUTPUTS = {"epsilon": ("eps", "the noise the denoiser sees in x"),
                    "v_prediction": ("v", "the velocity sqrt(abar) eps - sqrt(1 - abar) x0 the UNet predicts"),
                    "sample": ("x0", "the clean image the UNet predicts")}


# Every Triton model is published once per runtime: `<name>` runs the ONNX file
# through ONNX Runtime, `<name>_torchscript` runs the TorchScript file.
RUNTIME_SUFFIX = {"onnxruntime": "", "torchscript": "_torchscript"}

# Translators accept images from 8x8 (reflection padding needs it) up to this side.
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 1024


# --------------------------------------------------------------------------- models

# what a model does: ModelSpec.kind, and Signature.kind of what it publishes
KINDS = ("sample", "translate", "diffuse")
# what an autoencoder publishes beside its decoder (ModelSpec.encoder, ModelSpec.edits)
LATENT_KINDS = ("encode", "edit")
# An edit's strength per attribute: 1 adds the attribute's mean latent difference once, -1 takes it away.
EDIT_STRENGTH = 3.0


@dataclass(frozen=True)
class Origin:
    """Where an imported model came from (``ganexport import``, ganexport.models_folder): the source format and
    the options it was imported with, the source file's name and sha256, and its converted weights."""

    format: str
    source: str
    sha256: str
    options: Mapping[str, Any]
    weights: str  # the entry's weights.safetensors: the checkpoint build takes for this model


@dataclass(frozen=True)
class ModelSpec:
    """A training model: family, data, nets and the Triton models it publishes.

    Code asks the spec what a model is (``kind``, ``two_domains``, ``conditional``, ``class_judged``)
    rather than comparing family names; ``family`` names the training script, training/<family>.py. An
    imported model (``origin`` set, ganexport.models_folder) is made from its import record: its family is
    its source format, it has no dataset, and its one profile ``full`` holds what its factory needs.
    """

    name: str
    family: str
    dataset: str
    description: str
    nets: Mapping[str, str]  # role -> "module:factory", factory(image_shape, hp) -> nn.Module
    hparams: Mapping[str, Mapping[str, Any]]  # profile -> hyper-parameters
    serves: Mapping[str, str] = field(default_factory=dict)  # triton suffix -> net role
    # What the model does, and so the kind of every Triton model it publishes: "sample" (latent z, and a label
    # when conditional -> image), "translate" (image -> image of the same size) or "diffuse" (initial noise,
    # label and sampler settings -> image, by a denoiser run over several steps).
    kind: str = "sample"
    # Trained on two unpaired image domains A and B (a DatasetInfo with paired=True), translating both ways with
    # the nets g_ab and g_ba: its data, metrics and pictures go A->B and B->A.
    two_domains: bool = False
    conditional: bool = False  # a sampler (or a diffusion model) that also takes a class label
    # An autoencoder's net that maps an image to its latent (for a VAE, the mean comes first): published beside the
    # decoder as `<name>_encoder` (kind "encode"), uint8 image -> the latent the decoder takes.
    encoder: str | None = None
    # Also publishes `<name>_edit` (kind "edit"): encoder, a weighted sum of attribute vectors and decoder in one
    # graph; its data set must label attributes (DatasetInfo.attribute_names).
    edits: bool = False
    # Hyper-parameters added after checkpoints were written, with the value those checkpoints were trained
    # with, so an older checkpoint rebuilds (and resumes) the nets it holds, not today's default.
    hp_before: Mapping[str, Any] = field(default_factory=dict)
    # An imported model (no dataset of ours describes it): the image shape it serves (-1 sides: any size) and
    # where it came from. None for the models ganexport trains.
    image_shape: tuple[int, int, int] | None = None
    origin: Origin | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r}, expected one of {KINDS}")
        if self.two_domains and self.kind != "translate":
            raise ValueError(f"{self.name}: two_domains is for translators (kind 'translate')")
        if self.conditional and self.kind == "translate":
            raise ValueError(f"{self.name}: conditional is for samplers and diffusion models")
        if (self.encoder is not None or self.edits) and (self.kind != "sample" or self.conditional):
            raise ValueError(f"{self.name}: encoder and edits are for unconditional samplers (autoencoders)")
        if self.edits and (self.encoder is None or not DATASETS[self.dataset].attribute_names):
            raise ValueError(f"{self.name}: edits need an encoder and a data set with attribute_names")

    @property
    def samples_unconditionally(self) -> bool:
        """Draws images with no class asked for: an unconditional sampler, or a diffusion model (classifier-free
        guidance trains its "no class" estimate beside the conditional one)."""
        return self.kind == "diffuse" or (self.kind == "sample" and not self.conditional)

    def class_judged(self, dataset: str) -> bool:
        """Whether the judge can sort this model's output into ``dataset``'s classes: a sampler trained on
        labelled images. Then training logs class histograms and eval runs the class and FID metrics."""
        return self.kind in ("sample", "diffuse") and DATASETS[dataset].num_classes > 0

    # -- hyper-parameters -------------------------------------------------

    def hp(self, profile: str = "quick", **overrides: Any) -> dict[str, Any]:
        """Hyper-parameters of a profile, with overrides (None values ignored)."""
        if profile not in self.hparams:
            raise KeyError(f"model {self.name!r} has no profile {profile!r}; choose one of {list(self.hparams)}")
        hp = dict(self.hparams[profile])
        hp.update({k: v for k, v in overrides.items() if v is not None})
        return hp

    # -- nets -------------------------------------------------------------

    def build(self, role: str, image_shape: tuple[int, int, int], hp: Mapping[str, Any]):
        """Instantiate the net playing ``role`` (imports torch lazily)."""
        module_name, factory = self.nets[role].split(":")
        module = importlib.import_module(module_name)
        return getattr(module, factory)(tuple(image_shape), dict(hp))

    # -- serving signatures -----------------------------------------------

    def signatures(self, image_shape: tuple[int, int, int] | None = None,
                   hp: Mapping[str, Any] | None = None) -> list[Signature]:
        """The Triton models this model publishes, for its data shape and hyper-parameters.

        Defaults are the default dataset's shape and the ``full`` profile; the
        released weights (``quick`` nets) serve the same signatures, since the
        profiles differ in width and steps, not in tensor names or shapes.
        """
        image_shape = tuple(image_shape or self.image_shape or DATASETS[self.dataset].image_shape)
        hp = dict(hp or self.hp("full"))
        h, w, c = image_shape
        image_out = TensorSpec("image", "UINT8", (h, w, c), 0, 255, "generated image, uint8 HWC")
        sigs = []
        for suffix, role in self.serves.items():
            name = f"{self.name}{suffix}"
            if self.kind == "translate":
                sigs.append(Signature(
                    name=name, kind=self.kind, net=role,
                    inputs=(TensorSpec("image", "UINT8", (-1, -1, c), 0, 255, "input image, uint8 HWC, any size"),),
                    outputs=(TensorSpec("translated", "UINT8", (-1, -1, c), 0, 255,
                                        "translated image, same size as the input"),),
                    max_batch_size=hp.get("serve_max_batch", 8),
                    min_image_side=MIN_IMAGE_SIDE, max_image_side=MAX_IMAGE_SIDE,
                    description=self.description,
                ))
                continue
            if self.kind == "diffuse":
                sigs.append(self._diffusion_signature(name, role, image_out, hp))
                continue
            inputs = [TensorSpec("z", "FP32", (hp["latent_dim"],),
                                 doc="latent vector drawn from N(0, I), finite values")]
            if self.conditional:
                n = DATASETS[self.dataset].num_classes or hp.get("num_classes", 10)
                inputs.append(TensorSpec("label", "INT64", (1,), 0, n - 1, f"class index 0..{n - 1}"))
            sigs.append(Signature(
                name=name, kind=self.kind, net=role, inputs=tuple(inputs), outputs=(image_out,),
                max_batch_size=hp.get("serve_max_batch", 64), description=self.description,
            ))
        return sigs + self._latent_signatures(image_shape, hp)

    def _latent_signatures(self, image_shape: tuple[int, int, int], hp: Mapping[str, Any]) -> list[Signature]:
        """An autoencoder's encoder and, where its data set labels attributes, its edit model."""
        if self.encoder is None:
            return []
        image_in = TensorSpec("image", "UINT8", image_shape, 0, 255,
                              f"input image, uint8 HWC, {image_shape[0]}x{image_shape[1]} (resize first)")
        sigs = [Signature(
            name=f"{self.name}_encoder", kind="encode", net=self.encoder, inputs=(image_in,),
            outputs=(TensorSpec("latent", "FP32", (hp["latent_dim"],),
                                doc="the image's latent (a VAE's mean), in the space the decoder's z is drawn from"),),
            max_batch_size=hp.get("serve_max_batch", 64),
            description=f"{self.name}'s encoder: an image to the latent its decoder draws it back from",
        )]
        if self.edits:
            names = DATASETS[self.dataset].attribute_names
            sigs.append(Signature(
                name=f"{self.name}_edit", kind="edit", net=next(iter(self.serves.values())), inputs=(
                    image_in,
                    TensorSpec("strength", "FP32", (len(names),), -EDIT_STRENGTH, EDIT_STRENGTH,
                               f"one per attribute ({', '.join(names)}), -{EDIT_STRENGTH:g}..{EDIT_STRENGTH:g}: 1 adds "
                               "the attribute's latent vector once, -1 takes it away, 0 leaves it"),
                ),
                outputs=(TensorSpec("edited", "UINT8", image_shape, 0, 255, "the edited image, uint8 HWC"),),
                max_batch_size=hp.get("serve_max_batch", 64), attributes=names,
                description=f"{self.name}'s attribute edit in one request: encode, add the attribute vectors, decode",
            ))
        return sigs

    def _diffusion_signature(self, name: str, role: str, image_out: TensorSpec, hp: Mapping[str, Any]) -> Signature:
        """noise, label, steps, guidance, eta -> image, trajectory. ganexport's own models take a class or the
        "no class" label after the classes; an imported pipeline (hyper-parameters from its import record) takes
        a label only when conditional, has a "no class" label only when its import named one (``null_label``),
        and otherwise takes guidance 1 alone; ``ddim`` carries the diffusers scheduler its loop reproduces."""
        n = (DATASETS[self.dataset].num_classes if self.dataset in DATASETS else 0) or hp.get("num_classes", 10)
        null = hp.get("null_label", n)
        h, w, c = image_out.shape
        label = []
        if self.conditional:
            label = [TensorSpec("label", "INT64", (1,), 0, n, f"class index 0..{n - 1}, or {n} for no class")
                     if null == n else TensorSpec("label", "INT64", (1,), 0, n - 1, f"class index 0..{n - 1}" + (
                         f", {null} for no class" if null is not None else ""))]
        guidance = TensorSpec("guidance", "FP32", (1,), 0, 20, "classifier-free guidance scale, 0..20: "
                              "1 = the plain conditional model, 0 = unconditional")
        if null is None:
            guidance = TensorSpec("guidance", "FP32", (1,), 1, 1, "1 only: the model has no 'no class' label to guide "
                                  "against" + (" (import it with --null-class K to name one)" if label else ""))
        steps = hp.get("max_steps", hp["timesteps"])
        extra = {k: hp[k] for k in ("ddim", "guidance") if k in hp and "ddim" in hp}
        return Signature(
            name=name, kind=self.kind, net=role,
            inputs=(
                TensorSpec("noise", "FP32", image_out.shape, doc="initial noise x_T drawn from N(0, I), finite values"),
                *label,
                TensorSpec("steps", "INT32", (1,), 1, steps, f"sampler steps, 1..{steps}"),
                guidance,
                TensorSpec("eta", "FP32", (1,), 0, 1, "0 = deterministic DDIM, 1 = ancestral DDPM noise"),
            ),
            outputs=(image_out,
                     TensorSpec("trajectory", "UINT8", (TRAJECTORY_FRAMES, h, w, c), 0, 255,
                                f"the image after {TRAJECTORY_FRAMES} evenly spaced steps, the last one final")),
            max_batch_size=hp.get("serve_max_batch", 64), description=self.description,
            diffusion={"timesteps": hp["timesteps"], "null_label": null, "frames": TRAJECTORY_FRAMES, **extra},
        )


def _nets(**roles: str) -> dict[str, str]:
    return {role: f"ganexport.training.nets:{factory}" for role, factory in roles.items()}


# Shared profile skeletons: `smoke` runs in seconds on tiny nets (tests),
# `quick` learns visibly in minutes on 2 CPU cores, `full` is the released recipe.
_GAN = {
    "smoke": dict(steps=4, batch_size=16, width=8, latent_dim=16, lr=2e-4, sample_every=2, log_every=1),
    "quick": dict(steps=4000, batch_size=64, width=32, latent_dim=64, lr=2e-4, sample_every=500, log_every=50),
    "full": dict(steps=20000, batch_size=128, width=64, latent_dim=64, lr=2e-4, sample_every=1000, log_every=100),
}


def _with(base: dict, **extra: Any) -> dict:
    return {p: {**hp, **extra.get(p, {})} for p, hp in base.items()}


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="autoencoder", family="autoencoder", dataset="fashion-mnist",
            description="Autoencoder with a 2-D latent space; the decoder and the encoder are served",
            nets=_nets(encoder="mlp_encoder", decoder="mlp_decoder"),
            hparams={
                "smoke": dict(steps=4, batch_size=32, hidden=32, latent_dim=2, lr=1e-3, sample_every=2, log_every=1),
                "quick": dict(steps=1500, batch_size=128, hidden=256, latent_dim=2, lr=1e-3,
                              sample_every=250, log_every=25),
                "full": dict(steps=15000, batch_size=128, hidden=512, latent_dim=2, lr=1e-3,
                             sample_every=1000, log_every=100),
            },
            serves={"_decoder": "decoder"},
            encoder="encoder",
        ),
        ModelSpec(
            name="vae", family="vae", dataset="fashion-mnist",
            description="Variational autoencoder, 16-D latent, KL + reconstruction; the decoder and the encoder "
                        "are served",
            nets=_nets(encoder="mlp_vae_encoder", decoder="mlp_decoder"),
            # 16-D, not the autoencoder's 2-D: squeezed into two numbers the VAE blurs coats into pullovers
            # and sandals into sneakers, and never draws those classes (weights/vae.md has the figures)
            hparams={
                "smoke": dict(steps=4, batch_size=32, hidden=32, latent_dim=4, lr=1e-3, kl_weight=1.0,
                              sample_every=2, log_every=1),
                "quick": dict(steps=6000, batch_size=128, hidden=512, latent_dim=16, lr=1e-3, kl_weight=1.0,
                              sample_every=500, log_every=50),
                "full": dict(steps=15000, batch_size=128, hidden=512, latent_dim=16, lr=1e-3, kl_weight=1.0,
                             sample_every=1000, log_every=100),
            },
            serves={"_decoder": "decoder"},
            encoder="encoder",
        ),
        ModelSpec(
            name="vae_faces", family="vae_faces", dataset="faces",
            description="Convolutional VAE on 64x64 faces, 200-D latent as in the study notes; decoder, encoder and "
                        "attribute edits (latent vector arithmetic) are served",
            nets={"encoder": "ganexport.training.conv_vae:conv_vae_encoder",
                  "decoder": "ganexport.training.conv_vae:conv_decoder"},
            # vector_faces: held-out faces whose mean latents give the attribute vectors (2000: the whole split)
            hparams={
                "smoke": dict(steps=4, batch_size=16, width=4, latent_dim=8, lr=1e-3, kl_weight=1.0, vector_faces=16,
                              sample_every=2, log_every=1),
                "quick": dict(steps=12000, batch_size=64, width=32, latent_dim=200, lr=5e-4, kl_weight=1.0,
                              vector_faces=2000, sample_every=1000, log_every=50),
                "full": dict(steps=40000, batch_size=128, width=64, latent_dim=200, lr=5e-4, kl_weight=1.0,
                             vector_faces=2000, sample_every=2000, log_every=100),
            },
            serves={"_decoder": "decoder"},
            encoder="encoder", edits=True,
        ),
        ModelSpec(
            name="dcgan", family="dcgan", dataset="fashion-mnist",
            description="DCGAN: BCE loss, non-saturating generator loss",
            nets=_nets(generator="dcgan_generator", discriminator="dcgan_discriminator"),
            hparams=_with(_GAN, **{p: dict(beta1=0.5) for p in PROFILES}),
            serves={"": "generator"},
        ),
        ModelSpec(
            name="wgan_gp", family="wgan_gp", dataset="fashion-mnist",
            description="WGAN-GP: critic without sigmoid, gradient penalty (lambda 10), n_critic steps",
            nets=_nets(generator="dcgan_generator", critic="wgan_critic"),
            hparams=_with(_GAN, **{p: dict(lr=1e-4, beta1=0.0, beta2=0.9, n_critic=5, gp_weight=10.0,
                                          **({"steps": 1500} if p == "quick" else {}))  # 5 critic steps each
                                   for p in PROFILES}),
            serves={"": "generator"},
        ),
        ModelSpec(
            name="cgan", family="cgan", dataset="fashion-mnist",
            description="Conditional GAN: label embedded in G, projection discriminator, mode-seeking term",
            nets=_nets(generator="cgan_generator", discriminator="cgan_discriminator"),
            # d_conditioning: "projection" or "plane" (label as an input channel); mode_seeking: its weight, 0 = off
            hparams=_with(_GAN, **{p: dict(beta1=0.5, num_classes=10, d_conditioning="projection", mode_seeking=1.0)
                                   for p in PROFILES}),
            serves={"": "generator"},
            conditional=True,
            hp_before=dict(d_conditioning="plane", mode_seeking=0.0),
        ),
        ModelSpec(
            name="cyclegan", family="cyclegan", dataset="photo2sketch",
            description="CycleGAN: two ResNet generators, two PatchGAN discriminators, LSGAN + cycle + identity",
            nets=_nets(g_ab="resnet_generator", g_ba="resnet_generator",
                       d_a="patchgan_discriminator", d_b="patchgan_discriminator"),
            hparams={
                "smoke": dict(steps=3, batch_size=2, width=4, n_blocks=1, lr=2e-4, beta1=0.5, lr_decay_start=1.0,
                              cycle_weight=10.0, aba_weight_scale=1.0, cycle_noise=0.0, identity_weight=0.5,
                              aba_detail_weight=0.0, tone_weight=0.0, d_norm="instance", upsample="transpose",
                              ema_decay=0.0, pool_size=4, sample_every=2, log_every=1),
                "quick": dict(steps=600, batch_size=4, width=16, n_blocks=3, lr=2e-4, beta1=0.5, lr_decay_start=1.0,
                              cycle_weight=10.0, aba_weight_scale=1.0, cycle_noise=0.0, identity_weight=0.5,
                              aba_detail_weight=0.0, tone_weight=0.0, d_norm="instance", upsample="transpose",
                              ema_decay=0.0, pool_size=50, sample_every=100, log_every=10),
                "full": dict(steps=20000, batch_size=8, width=32, n_blocks=6, lr=2e-4, beta1=0.5, lr_decay_start=1.0,
                             cycle_weight=10.0, aba_weight_scale=1.0, cycle_noise=0.0, identity_weight=0.5,
                             aba_detail_weight=0.0, tone_weight=0.0, d_norm="instance", upsample="transpose",
                             ema_decay=0.0, pool_size=50, sample_every=1000, log_every=100),
            },
            serves={"_a2b": "g_ab", "_b2a": "g_ba"},
            kind="translate", two_domains=True,
            # d_norm: the discriminators' normalisation, "instance" (the paper's) or "none" (sees absolute tone)
            # tone_weight: weight of the grey-level histogram loss on G_ab's output (losses.tone_matching)
            # upsample: the generators' upsampling, "transpose" (the paper's) or "resize" (nearest + conv)
            # ema_decay: the served generators are an exponential moving average of their weights (0 = off)
            # aba_detail_weight: an A -> B -> A term on luminance detail only (losses.structure_l1), x cycle_weight
            hp_before=dict(d_norm="instance", tone_weight=0.0, upsample="transpose", ema_decay=0.0,
                           aba_detail_weight=0.0),
        ),
        ModelSpec(
            name="ddpm", family="ddpm", dataset="fashion-mnist",
            description="DDPM: a small UNet learns to remove noise, class-conditional with classifier-free guidance; "
                        "sampled by DDIM (eta 0) or ancestral DDPM (eta 1) in a loop around the exported denoiser",
            nets={"denoiser": "ganexport.training.unet:ddpm_unet"},
            # timesteps: the forward process's length (cosine schedule); label_dropout: how often a label is
            # replaced by "no class" in training (what guidance needs); grid_steps / health_steps: DDIM steps of
            # the sample grids and the class health check; guidance: the scale grids, health and the demo use;
            # prediction: what the UNet outputs, "v" or "eps" (training/unet.py says why v)
            hparams=_with({
                "smoke": dict(steps=4, batch_size=16, width=8, lr=1e-3, sample_every=2, log_every=1,
                              grid_steps=4, health_steps=2),
                "quick": dict(steps=12000, batch_size=64, width=32, lr=5e-4, sample_every=1000, log_every=50,
                              grid_steps=25, health_steps=10),
                "full": dict(steps=60000, batch_size=128, width=64, lr=2e-4, sample_every=5000, log_every=100,
                             grid_steps=50, health_steps=25),
            }, **{p: dict(timesteps=1000, num_classes=10, label_dropout=0.1, attention=True, guidance=2.0,
                          prediction="v", ema_decay=0.0 if p == "smoke" else 0.999) for p in PROFILES}),
            serves={"": "denoiser"},
            kind="diffuse", conditional=True,
            hp_before=dict(prediction="eps"),
        ),
    )
}


def imported_models() -> dict[str, ModelSpec]:
    """The models ``ganexport import`` wrote into the models folder, each a ModelSpec made from its import record
    (ganexport.models_folder reads them, torch-free, and again only when one changed)."""
    from ganexport import models_folder

    return models_folder.specs()


def models() -> dict[str, ModelSpec]:
    """Every model build, verify, export, infer, bench and the demo take: the catalog's own, then the imported
    ones (import refuses a name of the catalog, so none hides another)."""
    return {**MODELS, **imported_models()}


def get(name: str) -> ModelSpec:
    """The ModelSpec called ``name``, the catalog's or an imported one; a KeyError that lists the known names."""
    if name in MODELS:
        return MODELS[name]
    found = models()
    try:
        return found[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(found)}") from None


def triton_models(runtimes: tuple[str, ...] = ("onnxruntime",)) -> dict[str, tuple[ModelSpec, Signature]]:
    """Every Triton model the catalog publishes (default shapes), imported models included, by name, for the
    given runtimes."""
    return {s.name: (spec, s) for spec in models().values() for sig in spec.signatures()
            for s in (sig.for_runtime(r) for r in runtimes)}
