"""The repository a deployment serves: the published models, republished in the native flavour.

NVIDIA's Triton containers run ``onnxruntime_onnx`` and ``pytorch_libtorch`` models without a Python
stub, so a deployment takes each published model's newest version (its model file, signature.json and
parity report, whichever flavour ``ganexport build`` published it in: the files are the same) and
publishes it again, through ganexport.repository_writer, under a native config.pbtxt written by
ganexport.repository_config with the deployment's instance groups and batching. Names, tensors and
shapes come from each version's signature.json, never from here. A diffusion model has no native form
(``flavor_refusal``): it is skipped when deploy picks the models and refused when the user names it,
as ``ganexport build --flavor native`` does with ``--model all`` and with one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ganexport.catalog import Signature
from ganexport.repository import (
    CONFIG_FILE, MODEL_FILES, PARITY_FILE, RUNTIMES, check_integrity, default_models, latest, read_signature,
    select_models,
)
from ganexport.repository_config import config_pbtxt, flavor_refusal, model_name
from ganexport.repository_writer import publish_together
from ganexport.serving.deploy_server import DeployError

NATIVE = "native"


@dataclass(frozen=True)
class ServingKnobs:
    """What every deployed config.pbtxt carries: where instances run, how many, how requests are batched."""

    gpu: bool = True
    instances: int = 1
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    tensorrt: bool = False


@dataclass(frozen=True)
class DeployedModel:
    """One Triton model of the deployment: its published version and the config it is served with."""

    name: str
    sig: Signature  # the base signature, as signature.json holds it (config_pbtxt and publish take that)
    runtime: str
    version_dir: Path
    config: str

    def files(self) -> dict[str, Path]:
        """What the deployed version holds besides signature.json and SHA256SUMS (publish writes those)."""
        files = {MODEL_FILES[self.runtime]: self.version_dir / MODEL_FILES[self.runtime]}
        if (self.version_dir / PARITY_FILE).is_file():
            files[PARITY_FILE] = self.version_dir / PARITY_FILE
        return files


def plan(repo: Path, knobs: ServingKnobs, models: Iterable[str] = (), torchscript: bool = False,
         log=print) -> list[DeployedModel]:
    """The models to deploy from ``repo`` with their native configs; DeployError when there is none.

    ``models`` names them (refusing one without a native form); by default every model ``ganexport
    serve`` would load (the _torchscript twins with ``torchscript``), skipping, with a line to ``log``,
    those without a native form. The newest versions are checked against their SHA256SUMS first.
    """
    chosen = list(models)
    names = select_models(repo, chosen) if chosen else default_models(repo, torchscript)
    check_integrity(repo, names)
    planned = []
    for name in names:
        version_dir = latest(repo, name)
        sig = read_signature(version_dir)
        refusal = flavor_refusal(sig, NATIVE)
        if refusal and chosen:
            raise DeployError(f"deploy of {name} refused, nothing written: {refusal}")
        if refusal:
            log(f"skipped: {refusal}")
            continue
        runtime = _runtime(name, sig, version_dir)
        config = config_pbtxt(sig, flavor=NATIVE, runtime=runtime, gpu=knobs.gpu, instances=knobs.instances,
                              tensorrt=knobs.tensorrt and runtime == "onnxruntime",
                              max_queue_delay_us=knobs.max_queue_delay_us, max_queue_size=knobs.max_queue_size)
        planned.append(DeployedModel(name, sig, runtime, version_dir, config))
    if not planned:
        raise DeployError(f"nothing to deploy from {repo}: no published model has a native form")
    return planned


def _runtime(name: str, sig: Signature, version_dir: Path) -> str:
    """The runtime a published model runs: the one whose name it carries, with its model file present."""
    for runtime in RUNTIMES:
        if model_name(sig, runtime) == name:
            if not (version_dir / MODEL_FILES[runtime]).is_file():
                raise DeployError(f"{version_dir} has no {MODEL_FILES[runtime]}; rebuild {name}")
            return runtime
    raise DeployError(f"{version_dir}: its signature.json is for {sig.name!r}, not for the model {name!r}")


def write(out_repo: Path, source_repo: Path, planned: list[DeployedModel]) -> list[tuple[str, int]]:
    """Publish ``planned`` into ``out_repo`` (all staged before any is installed; only the newest version kept).

    Refused when ``out_repo`` is the source itself, or holds a model this deployment does not include
    (Triton would serve it too).
    """
    out_repo, source_repo = Path(out_repo), Path(source_repo)
    if out_repo.resolve() == source_repo.resolve():
        raise DeployError(f"--out would write into the published repository {source_repo} itself; choose another")
    names = {m.name for m in planned}
    stale = sorted(p.parent.name for p in out_repo.glob(f"*/{CONFIG_FILE}") if p.parent.name not in names)
    if stale:
        raise DeployError(f"{out_repo} holds {', '.join(stale)}, which this deployment does not include (Triton "
                          f"would serve them too); remove them or choose another --out")
    versions = publish_together(out_repo, [(m.sig, m.files(), m.config) for m in planned], keep=1)
    return [(m.name, v) for m, v in zip(planned, versions)]
