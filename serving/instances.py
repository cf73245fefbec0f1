"""How many Triton instances each model runs, and how many ONNX Runtime threads each instance uses,
from the cores Triton gets: chosen when a server starts, not when a model is built.

A published config.pbtxt says one CPU instance and ONNX Runtime's default threads (one per core), which
is right for no machine in particular. What suits a model depends on its kind and on the cores of the
machine that serves it, so ``TritonServer`` rewrites the instance count and the threads of every CPU ONNX
Runtime model in the view it serves (the published files stay as they are), from ``PLAN``:

- heavy models (translators, diffusion samplers): two instances (on two cores or more), each with a
  thread per core, sharing the cores (serving/shared_cores.py): a request alone runs on every core,
  while requests from two clients run side by side on half the cores each, filling the cores that one
  run's serial parts leave idle, rather than queueing or fighting over the cores;
- light models (samplers, encoders, editors: well under a millisecond of arithmetic an image): one
  instance of ``light_threads`` threads, since their time goes to the request's trip through Triton
  and the Python stub, not to arithmetic another thread could share.

docs/benchmarks.md ("Instances and threads") has the measurement that chose these, at batch 1 and 1, 2 and 8
clients. ``serve --instances N --threads T`` (``TritonServer(instances=, threads=)``) overrides both for
every model; TorchScript and GPU models keep what was published.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ganexport.repository import CONFIG_FILE, latest, read_signature

HEAVY_KINDS = ("translate", "diffuse")
# Each instance is a process holding its model (100-300 MB here): a typo of 1000 would fill the memory of the
# machine before Triton is ready. Planned counts stay far below.
MAX_INSTANCES = 16
INSTANCE_GROUP = re.compile(r"instance_group \[\s*\{ count: (\d+) kind: KIND_CPU \}\s*\]")
PLANNED_PARAMETERS = re.compile(
    r'parameters: \{ key: "ort_(intra_op_threads|share_cores)" value: \{ string_value: "\w*" \} \}\n?')


def triton_cores() -> int:
    """The cores a process started from here may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container limited to 2 CPUs of a 64-core host gets 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def plan(kind: str, cores: int) -> tuple[int, int]:
    """(instances, ONNX Runtime threads per instance) for a model of ``kind`` on ``cores`` cores."""
    if kind in HEAVY_KINDS:
        return (2 if cores >= 2 else 1), cores
    return 1, cores


def describe_plan(instances: int | None = None, threads: int | None = None, cores: int | None = None) -> str:
    """One line for `serve`'s start-up report: the cores, and what each kind of model gets from them."""
    cores = cores or triton_cores()
    heavy, light = ((instances or planned[0], threads or planned[1])
                    for planned in (plan(HEAVY_KINDS[0], cores), plan("sample", cores)))
    return (f"{cores} for Triton: translators and diffusion models {heavy[0]} instance(s) x {heavy[1]} thread(s)"
            f"{', sharing the cores' if heavy[0] != 1 and heavy[1] != 1 else ''}, "
            f"the others {light[0]} x {light[1]} (--instances / --threads override)"
            + (f"; --threads {threads} is more than the {cores} cores: its threads will wait on each other"
               if threads and threads > cores else ""))


def rewrite(config: str, instances: int, threads: int) -> str:
    """``config`` (a published CPU ONNX Runtime config.pbtxt) with this instance count and thread count;
    instances of more than one thread share the cores when there are several of them."""
    config = INSTANCE_GROUP.sub(f"instance_group [\n  {{ count: {instances} kind: KIND_CPU }}\n]", config)
    config = PLANNED_PARAMETERS.sub("", config)
    entry = f'parameters: {{ key: "ort_intra_op_threads" value: {{ string_value: "{threads}" }} }}\n'
    if instances > 1 and threads > 1:
        entry += 'parameters: { key: "ort_share_cores" value: { string_value: "true" } }\n'
    at = config.find("parameters: {")
    return config[:at] + entry + config[at:] if at >= 0 else config + entry


def tuned_configs(repository: Path, models: list[str], cores: int | None = None, instances: int | None = None,
                  threads: int | None = None) -> dict[str, str]:
    """Model -> its config.pbtxt with the planned (or given) instances and threads, for every CPU ONNX
    Runtime model of ``models`` (TritonServer(configs=...)); the others are left out, served as published."""
    cores = cores or triton_cores()
    configs = {}
    for name in models:
        path, version = Path(repository) / name / CONFIG_FILE, latest(Path(repository), name)
        if version is None or not path.is_file():
            continue
        config = path.read_text()
        if not INSTANCE_GROUP.search(config) or 'string_value: "onnxruntime"' not in config:
            continue  # GPU instances, TorchScript, or a config this module did not write
        planned = plan(read_signature(version).kind, cores)
        configs[name] = rewrite(config, instances or planned[0], threads or planned[1])
    return configs
