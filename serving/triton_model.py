"""The one generic Triton Python-backend model: every published model runs this file.

ganexport.repository_writer.publish copies it to ``<model>/<version>/model.py``. It
reads ``signature.json`` beside itself for tensor names and limits, and the config's
``runtime`` / ``model_file`` parameters to pick ONNX Runtime (``model.onnx``)
or TorchScript (``model.pt``). Each request is validated against the signature
on its own, so one bad request gets a clear INVALID_ARG error while the rest of
the dynamic batch is answered; valid requests with the same non-batch shapes
(translator images differ in size) run as ONE runtime call and are split back.

A "diffuse" model's file is its denoiser (``sig.denoiser()`` names its tensors): the session
runs that, and each group runs the sampler loop (ganexport.diffusion.run_signature) around it,
so one request returns finished images. Requests merged by the dynamic batcher may ask for
different steps, guidance or eta: run_signature walks each distinct setting's rows together.

The stub runs this file with the interpreter that started Triton (serving/triton_binary.py
puts its bin first on PATH), so ganexport imports here as anywhere: file names come from
ganexport.repository like everywhere else. No torch at module level: a stub that imports
torch costs hundreds of MB, so only TorchScript models pay for it, lazily, in initialize().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ganexport import diffusion
from ganexport.repository import MODEL_FILES, read_signature
from ganexport.serving.validation import InvalidInput, validate


def _log(msg: str) -> None:
    """pb_utils.Logger goes to Triton's log; older backends lack it, so print."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(msg)
    else:
        print(msg, flush=True)


def _error(msg: str, code: str = "INVALID_ARG"):
    """An error response with Triton's error ``code`` where the backend has it (INVALID_ARG is HTTP 400, not 500)."""
    code = getattr(pb_utils.TritonError, code, None)
    err = pb_utils.TritonError(msg, code) if code is not None else pb_utils.TritonError(msg)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class Cancelled(Exception):
    """Every client of a group gave up before its answer: the work stops here (args: the calls made)."""


class UntilCancelled:
    """A diffusion walk's ``eps_fn`` that, before each denoiser call, asks Triton whether every request of the
    group was cancelled (a gRPC client that gave up or passed its deadline: the front door passes that on),
    and stops the walk if so. A walk of the largest batch at the most steps costs minutes of CPU, which nobody
    would wait for. While one request of the group still waits, the walk goes on for all; ``all`` stops at
    the first of them, so a walk whose clients wait pays one question per step."""

    def __init__(self, eps_fn, requests: list):
        self.eps_fn, self.calls = eps_fn, 0
        self.asks = [r.is_cancelled for r in requests if hasattr(r, "is_cancelled")] or [lambda: False]

    def __call__(self, x, t, label):
        if all(ask() for ask in self.asks):
            raise Cancelled(self.calls)
        self.calls += 1
        return self.eps_fn(x, t, label)


class TritonPythonModel:
    """Triton calls initialize() once per instance, execute() per dynamic batch."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.sig = read_signature(version_dir)
        self.file_sig = self.sig.denoiser() if self.sig.diffusion is not None else self.sig  # what the file computes
        self.runtime = params.get("runtime", "onnxruntime")
        model_file = version_dir / (params.get("model_file") or MODEL_FILES.get(self.runtime, ""))
        gpu = args.get("model_instance_kind") == "GPU"
        device = int(args.get("model_instance_device_id", 0) or 0)
        ort_options = {k[4:]: v for k, v in params.items() if k.startswith("ort_") and v}
        if self.runtime == "onnxruntime":
            self._load_onnx(model_file, gpu, device, ort_options, config, args.get("model_instance_name", ""))
        elif self.runtime == "torchscript":
            self._load_torchscript(model_file, gpu, device)
        else:
            raise ValueError(f"{config['name']}: unknown runtime parameter {self.runtime!r}")
        self.compute = lambda feeds, requests: self.run(feeds)
        if self.sig.diffusion is not None:
            eps = diffusion.denoiser_eps_fn(self.sig, self.run)
            self.compute = lambda feeds, requests: diffusion.run_signature(self.sig, UntilCancelled(eps, requests),
                                                                           feeds)
        _log(f"{config['name']} version {args['model_version']}: {self.runtime} on {self.provider} "
             f"({model_file.name}, max batch {self.sig.max_batch_size}"
             + "".join(f", {k} {v}" for k, v in ort_options.items()) + ")")

    def _load_onnx(self, path: Path, gpu: bool, device: int, ort_options: dict[str, str], config: dict,
                   instance: str) -> None:
        """CUDA EP only on a GPU instance with a CUDA-enabled build: asking for it elsewhere spams errors.
        ``ort_options`` are the config's ``ort_*`` parameters (threads, graph optimisation, execution mode,
        spinning, arena release), over the defaults that serving/ort_session.py keeps for every in-process
        session too; the session (ort_session.OrtSession) gives its CPU arena back once the model is idle,
        so a burst of large images does not leave the stub holding its peak. ``share_cores`` (planned for
        the heavy models' CPU instances) runs a request on its share of the threads while another instance
        of the model runs (serving/shared_cores.py)."""
        import onnxruntime as ort

        from ganexport.serving.ort_session import TRUE, OrtSession
        from ganexport.serving.shared_cores import BusyFlags, CoreSharingSession, narrow_threads

        providers: list = ["CPUExecutionProvider"]
        if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))
        share = str(ort_options.pop("share_cores", "")).lower() in TRUE
        self.session = OrtSession(path, self.file_sig, ort_options, providers)
        instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
        threads = narrow_threads(ort_options.get("intra_op_threads"), instances)
        if share and not gpu and instances > 1:
            model = config["name"]

            def narrow() -> OrtSession:
                _log(f"{instance}: another instance of {model} is running: a {threads}-thread session for runs "
                     "beside it")
                return OrtSession(path, self.file_sig, {**ort_options, "intra_op_threads": str(threads)}, providers)

            self.session = CoreSharingSession(self.session, narrow, BusyFlags.for_instance(model, instance))
        self.provider = self.session.get_providers()[0]
        self.run = self._run_onnx

    def _load_torchscript(self, path: Path, gpu: bool, device: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(f"cuda:{device}" if gpu and torch.cuda.is_available() else "cpu")
        self.module = torch.jit.load(str(path), map_location=self.device).eval()
        self.provider = f"torch {torch.__version__} {self.device}"
        self.run = self._run_torchscript

    def _run_onnx(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run([t.name for t in self.file_sig.outputs], feeds)

    def _run_torchscript(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        args = [torch.from_numpy(feeds[t.name]).to(self.device) for t in self.file_sig.inputs]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.cpu().numpy() for o in outs]

    def execute(self, requests: list) -> list:
        """Validate each request, run each same-shape group once, answer in request order."""
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                inputs = self._read(request)
                validate(self.sig, inputs)
            except InvalidInput as e:
                responses[i] = _error(str(e))
                continue
            key = tuple(inputs[t.name].shape[1:] for t in self.sig.inputs)
            groups.setdefault(key, []).append((i, inputs))
        for members in groups.values():
            self._execute_group(members, [requests[i] for i, _ in members], responses)
        return responses

    def _read(self, request) -> dict[str, np.ndarray]:
        """The inputs the request carries; validate() names any that are missing."""
        inputs = {}
        for spec in self.sig.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
            if tensor is not None:
                inputs[spec.name] = tensor.as_numpy()
        return inputs

    def _execute_group(self, members: list, requests: list, responses: list) -> None:
        """One runtime call for the whole group, then split the outputs back by batch size."""
        feeds = {t.name: np.concatenate([inp[t.name] for _, inp in members]) for t in self.sig.inputs}
        try:
            outputs = self.compute(feeds, requests)
        except Cancelled as stop:
            rows = sum(len(inp[self.sig.inputs[0].name]) for _, inp in members)
            _log(f"{self.sig.name}: every client of {len(members)} request(s), {rows} row(s), gave up: the walk "
                 f"stopped after {stop.args[0]} denoiser call(s)")
            for i, _ in members:
                responses[i] = _error(f"{self.sig.name}: the request was cancelled by its client", "CANCELLED")
            return
        except Exception as e:  # a runtime failure answers every member, never crashes the stub
            for i, _ in members:
                responses[i] = _error(f"{self.sig.name}: {self.runtime} failed: {e}", "INTERNAL")
            return
        sizes = [inp[self.sig.inputs[0].name].shape[0] for _, inp in members]
        bounds = np.cumsum(sizes)[:-1]
        pieces = [np.split(out, bounds) for out in outputs]
        for k, (i, _) in enumerate(members):
            tensors = [pb_utils.Tensor(spec.name, np.ascontiguousarray(piece[k]))
                       for spec, piece in zip(self.sig.outputs, pieces)]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        _log(f"{self.sig.name}: unloading")
        session = getattr(self, "session", None)  # an ONNX model that loaded: stop its arena release
        if session is not None:
            session.close()
