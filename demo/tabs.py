"""Which tabs the demo shows and what it says about each model, from what is published.

Nothing here names a model or a family. A Triton model of the catalog gets a
tab when the backend serves it, and its served Signature says which:

| tab          | the signature                                                      |
|--------------|--------------------------------------------------------------------|
| Sample       | kind "sample", one latent input                                    |
| Latent space | kind "sample", one latent input of shape (2,)                      |
| Conditional  | kind "sample", a latent and a label input (an integer with a range) |
| Translate    | kind "translate", one uint8 image input                            |

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

TABS = {"sample": "Sample", "conditional": "Conditional", "latent": "Latent space", "translate": "Translate"}

# The dataset whose domain B is made by ganexport.sketch.pencil_sketch. Only a translator trained on it, into
# that domain, has an exact target to show beside its output; any other training data has none.
FILTER_DATASET = "photo2sketch"


# --------------------------------------------------------------------------- from a signature


def latent_input(sig: catalog.Signature) -> catalog.TensorSpec | None:
    """The latent vector a sampler starts from: its first input, float, one dimension."""
    first = sig.inputs[0] if sig.inputs else None
    return first if first is not None and first.dtype == "FP32" and len(first.shape) == 1 else None


def label_input(sig: catalog.Signature) -> catalog.TensorSpec | None:
    """The class a conditional sampler is asked for: an integer input after the latent, with a value range."""
    return next((t for t in sig.inputs[1:] if t.dtype.startswith("INT") and t.high is not None), None)


def tabs_for(sig: catalog.Signature) -> tuple[str, ...]:
    """The tabs a served model belongs in; () for a signature the demo has no widgets for."""
    if sig.kind == "translate":
        image = sig.inputs[0] if len(sig.inputs) == 1 else None
        return ("translate",) if image is not None and image.dtype == "UINT8" and len(image.shape) == 3 else ()
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
        if self.signature.kind == "sample" and default is not None and shape != default.image_shape:
            same = [d.name for d in catalog.DATASETS.values() if d.image_shape == shape and not d.paired]
            if len(same) == 1:
                return same[0]
        return self.spec.dataset

    @property
    def dataset(self) -> catalog.DatasetInfo | None:
        return catalog.DATASETS.get(self.dataset_name)

    @property
    def class_names(self) -> list[str]:
        """The label input's classes by name where the training data names that many, else by index."""
        label = label_input(self.signature)
        if label is None:
            return []
        n = int(label.high) + 1
        names = self.dataset.class_names if self.dataset is not None else ()
        return list(names) if len(names) == n else [str(i) for i in range(n)]

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

    def describe(self) -> str:
        """One Markdown line: what it is, what it was trained on, at which step, by which command."""
        data = self.dataset.description if self.dataset is not None and self.dataset.description else self.dataset_name
        head = f"**{self.name}**" + (f" ({self.direction})" if self.domains else "")
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

    def missing_line(self) -> str:
        """One short line about what the catalog has and this demo does not show; "" when nothing is missing."""
        parts = []
        if self.missing:
            parts.append("Not published: " + ", ".join(self.missing) + ".")
        no_tab = [m.name for m in self.models.values() if not m.tabs]
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
