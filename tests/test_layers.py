"""Dependencies point one way: catalog <- training <- export, and catalog <- repository format <- serving <- demo.

Read from the code by tests/import_graph.py (every import, module-level or inside a function),
plus a fresh interpreter that imports serving and the demo and finds no torch, exporter or trainer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import import_graph
import pytest

ROOT = Path(__file__).resolve().parent.parent
EDGES = import_graph.graph(ROOT)

# What each folder may import besides the hub (ganexport/: catalog, images, repository format...).
ALLOWED = {
    "training": {"torch"},
    "export": {"training", "torch"},
    "serving": {"torch"},  # the TorchScript backend, lazily (checked below)
    "demo": {"serving", "gradio"},
    "benchmarks": {"serving", "export", "training", "torch", "demo"},  # eager row builds the net; soak drives the demo
}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_a_folder_imports_only_the_layers_below_it(folder):
    allowed = ALLOWED[folder] | {"ganexport"}
    wrong = [f"{src} -> {dst}: {sorted(details)}" for (src, dst), details in EDGES.items()
             if src == folder and dst not in allowed]
    assert not wrong


def test_serving_and_the_benchmarks_import_torch_only_inside_functions():
    for folder in ("serving", "benchmarks"):
        eager = [d for d in EDGES.get((folder, "torch"), ()) if not d.endswith("(lazy)")]
        assert not eager, eager


def test_the_hub_modules_other_than_the_cli_depend_on_no_layer():
    details = [d for (src, dst), ds in EDGES.items() if src == "ganexport" for d in ds
               if not d.startswith("ganexport/cli")]
    assert not details, details


def test_serving_and_the_demo_load_without_torch_exporter_or_trainer():
    code = ("import sys; import ganexport.serving.backends, ganexport.serving.triton_server, "
            "ganexport.serving.serve_cli, ganexport.demo.demo_cli; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('ganexport.export', "
            "'ganexport.training'))); print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
