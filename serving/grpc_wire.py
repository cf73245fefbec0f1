"""A ModelInferRequest's header without its tensors: what the front door's gRPC side checks a request by.

The checks need the declared names, shapes and datatypes and the size of each raw tensor, never its
bytes. Parsing the whole message with protobuf copies every tensor (25 MB for the largest legal request)
while the door already holds the message and will pass it on as it is. So a large message is read at the
wire level instead: its top-level fields are walked by their tags and lengths (protobuf's encoding), the
``raw_input_contents`` fields (number 7) are only measured, and the rest, a few hundred bytes, is parsed
by protobuf as usual. A small message is parsed whole: the walk costs more than the copy there.
"""

from __future__ import annotations

from tritonclient.grpc import service_pb2

RAW_INPUT_CONTENTS = 7  # ModelInferRequest.raw_input_contents, in grpc_service.proto
WALK_ABOVE = 1 << 20  # messages above this are walked, not parsed whole


class MalformedMessage(ValueError):
    """Bytes that are not a protobuf message."""


def infer_header(message: bytes) -> tuple[service_pb2.ModelInferRequest, list[int] | None]:
    """The request with no raw tensors, and each raw tensor's size in order (None: parsed whole, and the
    request keeps its raw tensors). Raises MalformedMessage (protobuf's DecodeError, or a broken walk)."""
    if len(message) <= WALK_ABOVE:
        try:
            return service_pb2.ModelInferRequest.FromString(message), None
        except Exception as e:  # protobuf's DecodeError: not a ModelInferRequest at all
            raise MalformedMessage(str(e)) from None
    view, kept, sizes, pos = memoryview(message), [], [], 0
    while pos < len(view):
        start = pos
        tag, pos = _varint(view, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = _varint(view, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(view, pos)
            pos += length
            if field == RAW_INPUT_CONTENTS:
                if pos > len(view):
                    raise MalformedMessage("a raw tensor runs past the end of the message")
                sizes.append(length)
                continue
        else:
            raise MalformedMessage(f"wire type {wire_type} at byte {start}")
        if pos > len(view):
            raise MalformedMessage("a field runs past the end of the message")
        kept.append(view[start:pos])
    try:
        return service_pb2.ModelInferRequest.FromString(b"".join(kept)), sizes
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
        raise MalformedMessage(str(e)) from None


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(view) or shift > 63:
            raise MalformedMessage("a varint runs past the end of the message")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
