"""Serving: one Backend protocol over ONNX Runtime, TorchScript and Triton (issue #4). No torch at import."""
