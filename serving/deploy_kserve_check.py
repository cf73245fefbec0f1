"""Build InferenceService documents from KServe's own model classes, strictly; run in its own interpreter.

    echo '{"docs": [{"where": "FILE", "doc": {...}}, ...]}' | python -m ganexport.serving.deploy_kserve_check
    {"errors": [null or "one line", ...]}

It runs apart because the ``kserve`` SDK and tritonclient both register protobuf messages of the gRPC
package ``inference`` (KServe's open inference protocol, Triton's service) in protobuf's default pool: the
second import in one process fails with "duplicate symbol 'inference.ServerLiveRequest'".
serving/deploy_validate.py starts it and reads the answer; nothing else imports kserve.

The SDK's own deserializer skips keys it does not know, which would let ``spec.predictor.modle`` through;
here every key must be a field of its class (KServe's ``V1beta1*`` classes, and the Kubernetes client's
``V1*`` ones they refer to), every value of the field's declared type, and each class's constructor runs
its own checks (required fields). Resource quantities go through the Kubernetes client's ``parse_quantity``.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from typing import Any

_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (object,),
               "date": (str,), "datetime": (str,), "bytes": (str,), "ResourceQuantity": (str, int, float)}
# KServe's generator writes list[X] and dict(str, X); the Kubernetes client's, List[X] and Dict[str, X].
_LIST = re.compile(r"(?:list|List)\[(.+)\]")
_DICT = re.compile(r"(?:dict\(str, (.+)\))|(?:Dict\[str, (.+)\])")


class Invalid(ValueError):
    """One line: the field and what is wrong with it."""


def check(where: str, doc: dict) -> None:
    """Invalid when ``doc`` is not an InferenceService KServe would take with a Triton predictor."""
    import kserve
    from kserve.constants import constants
    from kubernetes.utils.quantity import parse_quantity

    try:
        isvc = build(doc, "V1beta1InferenceService", "")
    except Invalid as e:
        raise Invalid(f"{where}: {e}") from None
    if isvc.api_version != constants.KSERVE_V1BETA1 or isvc.kind != constants.KSERVE_KIND_INFERENCESERVICE:
        raise Invalid(f"{where}: apiVersion/kind must be {constants.KSERVE_V1BETA1} "
                      f"{constants.KSERVE_KIND_INFERENCESERVICE}, got {isvc.api_version} {isvc.kind}")
    predictor = isvc.spec.predictor if isvc.spec else None
    model = predictor.model if predictor else None
    if not isinstance(model, kserve.V1beta1ModelSpec) or model.model_format is None \
            or model.model_format.name != "triton":
        raise Invalid(f"{where}: spec.predictor.model.modelFormat.name must be triton")
    others = [predictor.attribute_map[a] for a in _servers(predictor) if a != "model"]
    if others:
        raise Invalid(f"{where}: spec.predictor sets {', '.join(others)} beside model; KServe takes one")
    for kind in ("requests", "limits"):
        for resource, quantity in ((getattr(model.resources, kind, None) or {}) if model.resources else {}).items():
            try:
                parse_quantity(quantity)
            except ValueError:
                raise Invalid(f"{where}: spec.predictor.model.resources.{kind}.{resource}: {quantity!r} is not "
                              f"a Kubernetes quantity") from None


def _servers(predictor) -> list[str]:
    """The predictor's fields that say what serves the model and are set: ``containers`` and the framework
    fields (``model``, ``triton``, ``sklearn`` ...), which are the classes that take a ``storage_uri``."""
    import kserve

    servers = [a for a, t in type(predictor).openapi_types.items()
               if hasattr(kserve.models, t) and "storage_uri" in getattr(kserve.models, t).openapi_types]
    return [a for a in [*servers, "containers"] if getattr(predictor, a)]


def _model_class(type_name: str):
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    raise Invalid(f"neither KServe nor the Kubernetes client has a model {type_name}")


def build(value: Any, type_name: str, path: str):
    """``value`` as an instance of ``type_name``, an OpenAPI type of the generated models
    (``V1Probe``, ``list[V1ContainerPort]``, ``dict(str, str)``, ``int`` ...)."""
    if value is None:
        return None
    if (items := _LIST.fullmatch(type_name)) is not None:
        if not isinstance(value, list):
            raise Invalid(f"{path or '(top level)'}: expected a list, got {value!r}")
        return [build(v, items.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    if (entries := _DICT.fullmatch(type_name)) is not None:
        if not isinstance(value, dict):
            raise Invalid(f"{path or '(top level)'}: expected a mapping, got {value!r}")
        inner = entries.group(1) or entries.group(2)
        return {k: build(v, inner, _join(path, k)) for k, v in value.items()}
    if type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]) or (type_name in ("int", "float") and isinstance(value, bool)):
            raise Invalid(f"{path or '(top level)'}: expected {type_name}, got {value!r}")
        return value
    klass = _model_class(type_name)
    if not isinstance(value, dict):
        raise Invalid(f"{path or '(top level)'}: expected a {type_name} mapping, got {value!r}")
    fields = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            raise Invalid(f"{_join(path, key)}: {type_name} has no field {key!r}"
                          + (f" (did you mean {close[0]!r}?)" if close else ""))
        kwargs[fields[key]] = build(item, klass.openapi_types[fields[key]], _join(path, key))
    try:
        return klass(**kwargs)
    except (TypeError, ValueError) as e:
        raise Invalid(f"{path or '(top level)'}: {type_name}: {_one_line(e)}") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _one_line(error: Exception) -> str:
    """The constructor's complaint in one line: the Kubernetes client's models are pydantic ones, whose
    ValidationError lists each field on its own lines (with a link); KServe's raise a plain ValueError."""
    if callable(getattr(error, "errors", None)):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return " ".join(str(error).split())


def main() -> None:
    request = json.load(sys.stdin)
    errors = []
    for item in request["docs"]:
        try:
            check(item["where"], item["doc"])
            errors.append(None)
        except Invalid as e:
            errors.append(str(e))
    json.dump({"errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
