"""Check what ``ganexport deploy`` writes against the schemas of the systems that will read it, without them.

- config.pbtxt: parsed with Triton's own protobuf schema (``tritonclient.grpc.model_config_pb2``), so a
  misspelled field or a bad enum (``kind: KIND_GPUS``) fails as Triton would fail to load it.
- The InferenceService: built, field by field and strictly, from KServe's own model classes (the ``kserve``
  SDK's ``V1beta1*`` classes and the Kubernetes client's ``V1*`` ones they refer to), in a separate
  interpreter: serving/deploy_kserve_check.py says why and how.
- The compose file: the Compose Specification's JSON schema, as check-jsonschema ships it
  (``vendor.compose-spec``), then that schema with interpolation left out: where the spec allows an integer
  or a boolean "or a string", the string is there for ``${VAR}``, which deploy never writes, so a count must be
  a number (``replicas: two`` passes the spec and would fail ``docker compose up``; it fails here).

Every check raises InvalidDeployment with one line naming the file and the field.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import subprocess
import sys
from typing import Any

from ganexport.serving.deploy_server import DeployError


class InvalidDeployment(DeployError):
    """A written file would be refused by the system that reads it."""


# --------------------------------------------------------------------------- Triton


def check_model_config(where: str, text: str):
    """``text`` parsed as Triton's ModelConfig; ``where`` names the file in the message."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise InvalidDeployment(f"{where} is not a Triton model config: {e}") from None


# --------------------------------------------------------------------------- KServe

KSERVE_CHECK = "ganexport.serving.deploy_kserve_check"
KSERVE_CHECK_TIMEOUT_S = 120


def kserve_available() -> bool:
    """Whether the kserve SDK is installed (the test extra): found, not imported (see deploy_kserve_check)."""
    return importlib.util.find_spec("kserve") is not None


def check_inference_service(where: str, doc: dict) -> None:
    """InvalidDeployment when KServe's own models refuse ``doc`` (serving/deploy_kserve_check.py)."""
    error = inference_service_errors([(where, doc)])[0]
    if error:
        raise InvalidDeployment(error)


def inference_service_errors(docs: list[tuple[str, dict]]) -> list[str | None]:
    """What KServe's models say of each (file name, document): None when it is valid, else one line.

    One interpreter checks them all: the SDK cannot share a process with tritonclient, and it takes a
    second or two to import."""
    request = json.dumps({"docs": [{"where": where, "doc": doc} for where, doc in docs]})
    try:
        done = subprocess.run([sys.executable, "-m", KSERVE_CHECK], input=request, capture_output=True, text=True,
                              timeout=KSERVE_CHECK_TIMEOUT_S)
        errors = json.loads(done.stdout)["errors"] if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        done, errors = None, f"{type(e).__name__}: {e}"
    if not isinstance(errors, list):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1] if done is not None else errors
        raise DeployError(f"the KServe check ({KSERVE_CHECK}) did not run: {tail}")
    return errors


# --------------------------------------------------------------------------- docker compose


@functools.cache
def compose_schemas() -> tuple[dict, dict]:
    """(the Compose Specification's schema as shipped, the same with interpolation strings left out)."""
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema = get_builtin_schema("vendor.compose-spec")
    return schema, _without_interpolation(copy.deepcopy(schema))


def _without_interpolation(node: Any) -> Any:
    """Drop "string" from every ``type: [integer|boolean, string]``: the string is only for ``${VAR}``."""
    if isinstance(node, dict):
        kinds = node.get("type")
        if isinstance(kinds, list) and "string" in kinds and set(kinds) - {"string", "null", "object"} in (
                {"integer"}, {"boolean"}):
            node["type"] = [k for k in kinds if k != "string"]
        for v in node.values():
            _without_interpolation(v)
    elif isinstance(node, list):
        for v in node:
            _without_interpolation(v)
    return node


NO_INTERPOLATION = " (deploy writes no ${...} variables, so a count or a flag is not a string)"


def check_compose(where: str, doc: dict) -> None:
    """``doc`` against the Compose Specification, then against it without interpolation."""
    import jsonschema

    shipped, resolved = compose_schemas()
    for schema, why in ((shipped, ""), (resolved, NO_INTERPOLATION)):
        errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))
        if errors:
            # the deepest error, where the file is wrong; "unevaluated properties" on its parent only follows from it
            error = max(errors, key=lambda e: (e.validator != "unevaluatedProperties", len(e.absolute_path)))
            error = jsonschema.exceptions.best_match([error])  # into oneOf/anyOf: the branch that came closest
            field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            raise InvalidDeployment(f"{where}: {field}: {error.message}{why}")
