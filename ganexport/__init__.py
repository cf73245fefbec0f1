"""ganexport: train compact generative models, export, verify, publish and serve them.

The package is split the way data flows (see ARCHITECTURE.md):

    ganexport.catalog    one ModelSpec per model: the single source of names and shapes
    ganexport.repository the Triton repository format (read side; repository_config / repository_writer write it)
    ganexport.training   datasets, nets, losses, the shared training loop
    ganexport.export     wrappers, ONNX/TorchScript export, parity, the build that publishes
    ganexport.serving    backends (ONNX Runtime, TorchScript, Triton) behind one protocol
    ganexport.demo       the Gradio app
"""

__version__ = "0.1.0"
