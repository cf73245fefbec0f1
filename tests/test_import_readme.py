"""The examples of docs/import.md, run verbatim, one per format.

Each block follows an ``<!-- import-example: FORMAT -->`` marker and runs as one bash script in an empty
folder holding the files it names, written here in each project's own layout (tests/import_layouts.py; for
the module format a CycleGAN-style ``models.py``), with the installed ``ganexport`` first on PATH and no
$GANEXPORT_MODELS, so the entries go to ./models as on a clean clone. The diffusers example (import, build,
serve, a tritonclient request) runs in tests/test_diffusers_serving.py, which serves what it built again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import import_layouts as layouts
from ganexport import models_folder
from ganexport.export.importers import formats

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parent.parent / "docs" / "import.md"

MODELS_PY = '''
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(features, features, 3), nn.InstanceNorm2d(features), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(features, features, 3), nn.InstanceNorm2d(features))

    def forward(self, x):
        return x + self.conv_block(x)


class Generator(nn.Module):
    """CycleGAN-style: 7x7 conv, two stride-2 convs, residual blocks, two transposed convs, 7x7 conv, tanh."""

    def __init__(self, input_nc, output_nc, n_residual_blocks=2, width=4):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, width, 7), nn.InstanceNorm2d(width), nn.ReLU(inplace=True)]
        for c in (width, 2 * width):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(4 * width) for _ in range(n_residual_blocks)]
        for c in (4 * width, 2 * width):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)
'''


def example(name: str) -> str:
    match = re.search(rf"<!-- import-example: {re.escape(name)} -->\n```sh\n(.*?)```", PAGE.read_text(), re.S)
    assert match, f"{PAGE.name} has no import example {name!r}"
    return match.group(1)


def test_the_readme_has_one_example_per_format():
    found = re.findall(r"<!-- import-example: ([\w-]+) -->", PAGE.read_text())
    assert found == list(formats.FORMATS)


def photo(path: Path, h: int, w: int) -> None:
    Image.fromarray(np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_pytorch_cyclegan(cwd: Path) -> None:
    (cwd / "checkpoints/horse2zebra").mkdir(parents=True)
    torch.save(layouts.resnet_state(ngf=2, n_blocks=9), cwd / "checkpoints/horse2zebra/latest_net_G_A.pth")
    photo(cwd / "horse.jpg", 75, 101)


def write_dcgan_tutorial(cwd: Path) -> None:
    torch.save({"epoch": 5, "netG_state_dict": layouts.dcgan_tutorial_generator(nz=8, ngf=2).state_dict(),
                "netD_state_dict": layouts.dcgan_tutorial_discriminator().state_dict()}, cwd / "dcgan_checkpoint.pth")


def write_module(cwd: Path) -> None:
    (cwd / "PyTorch-CycleGAN/output").mkdir(parents=True)
    (cwd / "PyTorch-CycleGAN/models.py").write_text(MODELS_PY)
    namespace: dict = {}
    exec(compile(MODELS_PY, "models.py", "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["Generator"](3, 3).state_dict(), cwd / "PyTorch-CycleGAN/output/netG_A2B.pth")
    photo(cwd / "photo.jpg", 50, 33)


SETUP = {"pytorch-cyclegan": write_pytorch_cyclegan, "dcgan-tutorial": write_dcgan_tutorial, "module": write_module}
# What each example's last line writes, and the size it must have (a translator keeps its input's).
OUTPUT = {"pytorch-cyclegan": ("zebra.png", (101, 75)), "dcgan-tutorial": ("faces.png", None),
          "module": ("monet.png", (33, 50))}


@pytest.mark.parametrize("fmt", list(SETUP))
def test_a_readme_import_example_runs_verbatim(tmp_path, fmt):
    SETUP[fmt](tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in (models_folder.ENV, "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", example(fmt)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    name, size = OUTPUT[fmt]
    written = Image.open(tmp_path / name)
    assert size is None or written.size == size
    entries = models_folder.entries(tmp_path / "models")
    assert [e.spec.origin.format for e in entries] == [fmt]
