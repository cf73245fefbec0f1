"""The documentation site (mkdocs.yml, docs/) and the short README.

`mkdocs build --strict` fails on a broken link or anchor, a page missing from the nav's files, or a click
command mkdocs-click cannot render, so a page that drifts from the code or from another page fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from ganexport.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    def walk(items):
        for item in items:
            for value in item.values():
                yield from walk(value) if isinstance(value, list) else [value]
    return list(walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def test_the_site_builds_with_strict_checks(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    cli_page = (tmp_path / "site" / "cli" / "index.html").read_text()
    for name in COMMANDS:  # every command rendered from its click definition, with its options
        assert f'id="ganexport-{name}"' in cli_page, name
    assert 'id="ganexport-models"' in cli_page and "--hparams" in cli_page
    gallery = (tmp_path / "site" / "models" / "index.html").read_text()
    assert "gallery:start" in gallery and 'src="../weights/cyclegan.png"' in gallery


def test_every_model_card_is_in_the_navigation():
    cards = {f"weights/{p.name}" for p in (ROOT / "weights").glob("*.md")}
    assert cards and cards <= set(nav_pages()), sorted(cards - set(nav_pages()))


def test_the_command_reference_has_one_block_per_command():
    blocks = re.findall(r"::: mkdocs-click\n    :module: ([\w.]+)\n    :command: (\w+)", (DOCS / "cli.md").read_text())
    assert sorted(f"{m}:{c}" for m, c in blocks if c != "cli") == sorted(COMMANDS.values())
    assert ("ganexport.cli", "cli") in blocks


def test_the_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in nav_pages():
        if page != "index.md" and not page.startswith("weights/"):  # the home page is the README's twin
            assert f"](docs/{page})" in readme, page
    for target in re.findall(r"\]\(((?:docs|weights)/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_every_example_the_tests_run_is_on_its_page():
    found = {}
    for page in DOCS.glob("*.md"):
        for marker in re.findall(r"<!-- ((?:example|import-example|install-check): [\w-]+) -->", page.read_text()):
            assert marker not in found, f"{marker} on {found[marker]} and {page.name}"
            found[marker] = page.name
    assert {k: v for k, v in found.items() if v != "serving.md" and k.startswith("example:")} == {}
    assert {found[f"install-check: {n}"] for n in ("train-and-serve", "serve-only")} == {"getting-started.md"}
    assert {v for k, v in found.items() if k.startswith("import-example:")} == {"import.md"}


# --------------------------------------------------------------------------- figures that come from records

RESULTS = ROOT / "benchmarks" / "results" / "cpu-amd-epyc-avx512-2c"


def test_the_capacity_table_and_its_prose_come_from_the_records():
    from ganexport.benchmarks import capacity

    text = (DOCS / "benchmarks.md").read_text()
    assert capacity.table() in text, "docs/benchmarks.md: rerun python -m ganexport.benchmarks.capacity"
    per_replica = capacity.cpu_512_images_per_s()
    cores = {rate: capacity.replicas(rate, per_replica) * capacity.CPU_CORES_PER_REPLICA for rate in (1_000, 10_000)}
    assert f"carries {per_replica:.1f} translations per second" in text
    assert f"about {cores[1_000]:,} cores per thousand" in text and f"{cores[10_000]:,} CPU cores" in text


def test_the_ddpm_sampling_table_matches_its_record():
    import json

    rows = json.loads((RESULTS / "ddpm-sampling.json").read_text())["results"]
    p50 = {(r["steps"], r["batch"], r["backend"]): r["p50_ms"] for r in rows}
    section = (DOCS / "benchmarks.md").read_text().split("## Diffusion sampling (ddpm)", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^\| (\d+) \| (\d+) \| ([\d.]+) \([\d.]+\) \| ([\d.]+) \([\d.]+\) \| ([\d.]+) \([\d.]+\) "
                       r"\| ([\d.]+) \([\d.]+\) \| \**([\d.]+)", section, re.M)
    assert len(table) == len({(s, b) for s, b, _ in p50}) == len({tuple(row[:2]) for row in table}), "one row each"
    for steps, batch, *shown, ratio in table:
        key = int(steps), int(batch)
        for backend, value in zip(("eager", "onnxruntime", "triton-http", "triton-grpc"), shown):
            assert abs(float(value) - p50[(*key, backend)]) <= 0.03 * p50[(*key, backend)], (key, backend)
        want = p50[(*key, "triton-grpc")] / p50[(*key, "onnxruntime")]
        assert abs(float(ratio) - want) < 0.006, (key, ratio, want)
