"""Which tabs the demo shows and what it says about each model, from what is published.

Nothing here names a model or a family. A Triton model of the catalog gets a
tab when the backend serves it, and its served Signature says which:

| tab          | the signature                                                                  |
|--------------|--------------------------------------------------------------------------------|
| Sample       | kind "sample", one latent input                                                |
| Latent space | kind "sample", one latent input of shape (2,)                                  |
| Conditional  | kind "sample", a latent and a label input (an integer with a range); or kind   |
|              | "diffuse" with a label input, so a GAN and a diffusion model meet on one class |
| Diffusion    | kind "diffuse": image-shaped noise, the sampler settings steps, guidance and   |
|              | eta, a label input optional (a class picker only for a model that takes one)   |
| Translate    | kind "translate", one uint8 image input                                        |
| Latent       | kind "edit" (an image and one strength per attribute), with the encoder and    |
| arithmetic   | decoder of the same model served beside it                                     |

An encoder (kind "encode") has no tab of its own: it works in its decoder's tabs (where an upload lands
in a 2-D latent space; the latents of faces to morph or combine).

What each model was trained on comes from the training record published with
it (``parity.json``'s ``source``: dataset, step, command), so a translator
trained on your own photos is described as such. Gradio-free.

    >>> from ganexport.demo.tabs import catalog_endpoints
    >>> sample_models, translators = catalog_endpoints()
    >>> "dcgan" in sample_models, "cyclegan_a2b" in translators
    (True, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ganexport import catalog
from ganexport import repository as repository_format
from ganexport.demo.backend import DemoError

# In page order: the page opens on the first that has a model (translation, the headline use, where served).
TABS = {"translate": "Translate", "sample": "Sample", "conditional": "Conditional", "latent": "Latent space",
        "diffusion": "Diffusion", "arithmetic": "Latent arithmetic"}
# The sampler settings a "diffuse" signature takes beside its noise and label: the Diffusion tab's widgets.
SAMPLER_SETTINGS = ("steps", "guidance", "eta")
# What the class dropdown of the Diffusion tab calls the label "no class" (the signature's null_label).
NO_CLASS = "no class (unconditional)"
# Without a default in the signature: a guidance scale that visibly helps a small model draw its class.
DEFAULT_GUIDANCE = 2.0

# The dataset whose domain B is made by ganexport.sketch.pencil_sketch. Only a translator trained on it, into
# that domain, has an exact target to show beside its output; any other training data has none.
FILTER_DATASET = "photo2sketch"


# --------------------------------------------------------------------------- from a signature


def latent_input(sig: catalog.Signature) -> catalog.TensorSpec | None:
    """The latent vector a sampler starts from: its first input, float, one dimension."""
    first = sig.inputs[0] if sig.inputs else None
    return first if first is not None and first.dtype == "FP32" and len(first.shape) == 1 else None


def noise_input(sig: catalog.Signature) -> catalog.TensorSpec | None:
    """The noise a diffusion sampler starts from: its first input, float, shaped like the image it makes."""
    first = sig.inputs[0] if sig.inputs else None
    image = sig.outputs[0].shape if sig.outputs else None
    return first if first is not None and first.dtype == "FP32" and first.shape == image else None


def label_input(sig: catalog.Signature) -> catalog.TensorSpec | None:
    """The class a conditional model is asked for: an integer input after the first, with a value range; for
    a diffusion model, the one that is not a sampler setting (steps is an integer with a range too)."""
    labels = [t for t in sig.inputs[1:] if t.dtype.startswith("INT") and t.high is not None]
    if sig.kind == "diffuse":
        labels = [t for t in labels if t.name not in SAMPLER_SETTINGS]
    return labels[0] if labels else None


def sampler_settings(sig: catalog.Signature) -> dict[str, catalog.TensorSpec] | None:
    """{setting: its input} when a "diffuse" signature takes every one of SAMPLER_SETTINGS, each a single
    number with a range (what a slider needs); None otherwise."""
    named = {t.name: t for t in sig.inputs}
    found = {s: named[s] for s in SAMPLER_SETTINGS if s in named and named[s].shape == (1,)
             and named[s].low is not None and named[s].high is not None}
    return found if len(found) == len(SAMPLER_SETTINGS) else None


def _diffusion_tabs(sig: catalog.Signature) -> tuple[str, ...]:
    """Diffusion for a sampler the tab has widgets for; Conditional too when it takes a class."""
    if noise_input(sig) is None or sampler_settings(sig) is None or sig.diffusion is None:
        return ()
    label = label_input(sig)
    if len(sig.inputs) != 1 + len(SAMPLER_SETTINGS) + (label is not None):
        return ()
    return ("conditional", "diffusion") if label is not None else ("diffusion",)


def tabs_for(sig: catalog.Signature) -> tuple[str, ...]:
    """The tabs a served model belongs in; () for a signature the demo has no widgets for."""
    if sig.kind == "translate":
        image = sig.inputs[0] if len(sig.inputs) == 1 else None
        return ("translate",) if image is not None and image.dtype == "UINT8" and len(image.shape) == 3 else ()
    if sig.kind == "diffuse":
        return _diffusion_tabs(sig)
    if sig.kind == "edit":
        image = sig.inputs[0] if len(sig.inputs) == 2 else None
        fits = image is not None and image.dtype == "UINT8" and sig.inputs[1].shape == (len(sig.attributes),)
        return ("arithmetic",) if fits and sig.attributes else ()
    if sig.kind != "sample" or latent_input(sig) is None:
        return ()
    if len(sig.inputs) == 1:
        return ("sample", "latent") if sig.inputs[0].shape == (2,) else ("sample",)
    if len(sig.inputs) == 2 and label_input(sig) is not None:
        return ("conditional",)
    return ()


def catalog_endpoints() -> tuple[tuple[str, ...], dict[str, str]]:
    """(unconditional sample models, {the /translate endpoint's ``model`` value: model}) from the catalog alone.

    For clients that drive the demo's endpoints without reading its page (the soak benchmark); what a
    running demo offers is what is published, a subset of these.
    """
    sample, translate = [], {}
    for name, (_, sig) in catalog.triton_models().items():
        tabs = tabs_for(sig)
        if "sample" in tabs:
            sample.append(name)
        if "translate" in tabs:
            translate[name] = name
    return tuple(sample), translate


# --------------------------------------------------------------------------- from the repository


def published_source(repository: str | Path, model: str) -> dict[str, Any]:
    """The training record published with ``model``: ``source`` of parity.json in its newest version dir.

    {} when the repository is not readable here (a remote Triton) or the build made no report.
    """
    try:
        version_dir = repository_format.latest(Path(repository), model)
        report = repository_format.read_parity(version_dir) if version_dir else {}
    except (OSError, repository_format.RepositoryError):
        return {}
    source = report.get("source")
    return dict(source) if isinstance(source, dict) else {}


# --------------------------------------------------------------------------- one served model


@dataclass(frozen=True)
class DemoModel:
    """A model the backend serves, with its catalog entry and the training record published with it."""

    name: str
    signature: catalog.Signature
    spec: catalog.ModelSpec
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tabs(self) -> tuple[str, ...]:
        return tabs_for(self.signature)

    @property
    def dataset_name(self) -> str:
        """The dataset it was trained on: as published; without a record, the catalog's default, or the one
        dataset whose image shape the served model makes."""
        if self.source.get("dataset"):
            return str(self.source["dataset"])
        default = catalog.DATASETS.get(self.spec.dataset)
        shape = tuple(self.signature.outputs[0].shape)
        if self.signature.kind in ("sample", "diffuse") and default is not None and shape != default.image_shape:
            same = [d.name for d in catalog.DATASETS.values() if d.image_shape == shape and not d.paired]
            if len(same) == 1:
                return same[0]
        return self.spec.dataset

    @property
    def dataset(self) -> catalog.DatasetInfo | None:
        return catalog.DATASETS.get(self.dataset_name)

    @property
    def null_label(self) -> int | None:
        """The label that asks a diffusion model for no class (the top of its label range for ganexport's own);
        None for a sampler, and for an imported diffusion model that has none."""
        return None if label_input(self.signature) is None else (self.signature.diffusion or {}).get("null_label")

    @property
    def class_indices(self) -> list[int]:
        """The label values that ask for a class: the label input's range without the "no class" label."""
        label = label_input(self.signature)
        if label is None:
            return []
        return [i for i in range(int(label.low or 0), int(label.high) + 1) if i != self.null_label]

    @property
    def class_names(self) -> list[str]:
        """The label input's classes (not "no class"), in ``class_indices`` order, by name where the training data
        names that many, else by index."""
        indices = self.class_indices
        names = self.dataset.class_names if self.dataset is not None else ()
        return list(names) if len(names) == len(indices) else [str(i) for i in indices]

    @property
    def diffusion_classes(self) -> list[str]:
        """What the Diffusion tab's class picker offers: the classes, and NO_CLASS where the model has a "no class"
        label; NO_CLASS alone for a model that takes no class (the picker is then hidden)."""
        if label_input(self.signature) is None:
            return [NO_CLASS]
        return self.class_names + ([NO_CLASS] if self.null_label is not None else [])

    def setting(self, name: str) -> catalog.TensorSpec:
        """One of a diffusion model's SAMPLER_SETTINGS inputs (steps, guidance, eta), with its range."""
        return (sampler_settings(self.signature) or {})[name]

    @property
    def default_guidance(self) -> float:
        """The guidance scale the model is meant to be sampled at: the signature's where it says one, else the
        catalog's (the scale training's grids use), else DEFAULT_GUIDANCE."""
        said = (self.signature.diffusion or {}).get("guidance")
        if said is None:  # the profile the catalog's signatures are written for, as in ModelSpec.signatures
            hp = self.spec.hparams.get("full") or next(iter(self.spec.hparams.values()), {})
            said = hp.get("guidance", DEFAULT_GUIDANCE)
        return float(said)

    @property
    def _ends(self) -> tuple[str, str] | None:
        """("a", "b") for a two-domain translator serving its A->B net (g_ab), ("b", "a") for B->A (g_ba)."""
        role = re.search(r"([ab])_?2?([ab])$", self.signature.net.lower())
        if not self.spec.two_domains or self.signature.kind != "translate" or role is None or role[1] == role[2]:
            return None
        return role[1], role[2]

    @property
    def domains(self) -> tuple[str, str] | None:
        """(from, to) of a translator: the dataset's domain names where its name says them ("photo2sketch"),
        else A and B."""
        if self._ends is None:
            return None
        named = re.fullmatch(r"([a-z]+)2([a-z]+)", self.dataset_name)
        a, b = (named[1], named[2]) if named else ("A", "B")
        return (a, b) if self._ends[0] == "a" else (b, a)

    @property
    def direction(self) -> str:
        return f"{self.domains[0]} -> {self.domains[1]}" if self.domains else self.name

    @property
    def shows_filter_target(self) -> bool:
        """Only a translator into FILTER_DATASET's domain B (made by the filter) has an exact target to show."""
        return self.dataset_name == FILTER_DATASET and self._ends == ("a", "b")

    @property
    def imported(self) -> dict[str, Any]:
        """Where a model ``ganexport import`` brought in came from ({format, source, sha256}): as published with it,
        else as its import record says; {} for a model ganexport trained."""
        if isinstance(self.source.get("imported"), dict):
            return dict(self.source["imported"])
        origin = self.spec.origin
        return {"format": origin.format, "source": origin.source, "sha256": origin.sha256} if origin else {}

    def describe(self) -> str:
        """One Markdown line: what it is, what it was trained on, at which step, by which command; for an imported
        model, the file and format it came from."""
        data = self.dataset.description if self.dataset is not None and self.dataset.description else self.dataset_name
        head = f"**{self.name}**" + (f" ({self.direction})" if self.domains else "")
        imported = self.imported
        if imported:
            return (f"{head}: {self.spec.description}; trained elsewhere, imported from `{imported['source']}` "
                    f"(format {imported['format']}).")
        if not self.source:
            return (f"{head}: {self.spec.description}; trained on {data} (the catalog's default: no training "
                    f"record was published with this model).")
        steps = f" for {self.source['step']} steps" if self.source.get("step") is not None else ""
        text = f"{head}: {self.spec.description}; trained{steps} on {data}"
        command = repository_format.public_command(self.source.get("command"))
        return text + (f"; trained by `{command}`." if command else ".")


# --------------------------------------------------------------------------- the plan


@dataclass
class DemoPlan:
    """Every served model by name (catalog order), and why each catalog model is not served."""

    models: dict[str, DemoModel]
    missing: dict[str, str] = field(default_factory=dict)

    def tab(self, tab: str) -> list[DemoModel]:
        return [m for m in self.models.values() if tab in m.tabs]

    @property
    def tabs(self) -> list[str]:
        """The tabs with at least one model, in page order."""
        return [t for t in TABS if self.tab(t)]

    def get(self, model: str, tab: str) -> DemoModel:
        served = self.models.get(model)
        if served is None or tab not in served.tabs:
            names = ", ".join(m.name for m in self.tab(tab)) or "none is published"
            raise DemoError(f"{model!r} is not offered in the {TABS[tab]} tab; choose one of: {names}")
        return served

    def partner(self, model: str, kind: str) -> str | None:
        """The served model of ``kind`` that the same training model publishes beside ``model`` (an edit model's
        encoder and decoder, a decoder's encoder); None when it is not served."""
        spec = self.models[model].spec.name
        return next((m.name for m in self.models.values() if m.spec.name == spec and m.signature.kind == kind), None)

    def partners(self, model: str) -> list[str]:
        """The other Conditional models that know the same classes as ``model``: those can be shown beside it."""
        first = self.get(model, "conditional")
        return [m.name for m in self.tab("conditional") if m.name != model and m.class_names == first.class_names]

    def first_partner(self, model: str) -> str | None:
        """What the Conditional tab shows beside ``model`` at first: a partner of the other kind (a diffusion
        model beside a GAN, a GAN beside a diffusion model), else any partner; None when it has none."""
        kind = self.models[model].signature.kind
        partners = self.partners(model)
        other = [p for p in partners if self.models[p].signature.kind != kind]
        return (other or partners or [None])[0]

    def missing_line(self) -> str:
        """One short line about what the catalog has and this demo does not show; "" when nothing is missing."""
        parts = []
        if self.missing:
            parts.append("Not published: " + ", ".join(self.missing) + ".")
        no_tab = [m.name for m in self.models.values() if not m.tabs and m.signature.kind != "encode"]
        if no_tab:
            parts.append("Published, but this demo has no tab for: " + ", ".join(no_tab) + ".")
        return " ".join(parts)


def discover(backend, repository: str | Path) -> DemoPlan:
    """Ask ``backend`` (a FallbackBackend) for every Triton model of the catalog; read what was published with
    each from ``repository``."""
    served = catalog.triton_models()
    found, missing = backend.signatures(served)
    models = {name: DemoModel(name, found[name], served[name][0], published_source(repository, name))
              for name in served if name in found}
    return DemoPlan(models, missing)
