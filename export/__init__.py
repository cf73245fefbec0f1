"""Export: uint8-in/uint8-out wrappers, ONNX and TorchScript, parity, and the build pipeline that publishes."""
