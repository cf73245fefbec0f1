"""Export: uint8-in/uint8-out wrappers, ONNX and TorchScript, parity, Triton repository (issue #3)."""
