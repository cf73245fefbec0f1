"""Serving: one Backend protocol over ONNX Runtime, TorchScript and Triton. No torch at import."""
