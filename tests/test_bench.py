"""`ganexport bench` and `--soak` on the tiny published models: files, rows, ratios, knobs.

Durations are tiny and no figure is asserted: benchmarks record wall-clock
time, tests only check that every row was measured without errors and that
the files say what was measured, on what.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ganexport import catalog
from ganexport.benchmarks import hardware, perf_analyzer, report, runner
from ganexport.benchmarks.bench_cli import bench
from ganexport.benchmarks.targets import Variant, variant_configs
from ganexport.repository_config import config_pbtxt
from ganexport.serving.backends import session_options

KINDS = ("eager", "torchscript", "onnxruntime", "triton-http", "triton-grpc")


def _invoke(args: list[str]):
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.integration
def test_bench_measures_every_backend_and_variant_and_writes_json_md_png(published, tiny_checkpoints, tmp_path):
    repo, _ = published
    args = ["--repository", str(repo), "--model", "dcgan,cyclegan_a2b", "--batch", "1,16", "--concurrency", "1,2",
            "--size", "16", "--duration", "0.06", "--rounds", "2", "--warmup", "0", "--out", str(tmp_path),
            "--variant", "nobatch:dynamic_batching=false,intra_op_threads=1,graph_optimization=basic",
            "--variant", "nospin:allow_spinning=false"]  # session options only: in-process ORT gets a row too
    args += [a for m in ("dcgan", "cyclegan") for a in ("--checkpoint", f"{m}={tiny_checkpoints[m]}")]
    out = _invoke(args).output
    assert "cyclegan_a2b 16x16 batch 16: above its max batch" in out  # translators stop at batch 8

    folder = tmp_path / hardware.slug()
    doc = json.loads((folder / "bench.json").read_text())
    assert {"cpu", "cores", "versions", "triton_server"} <= set(doc["hardware"])
    assert doc["models"]["dcgan"]["eager_source"]["same_as_published"] is True
    rows = doc["results"]
    labels = {r["backend"] for r in rows}
    assert labels == {*KINDS, "triton-http[nobatch]", "triton-grpc[nobatch]",
                      "triton-http[nospin]", "triton-grpc[nospin]", "onnxruntime[nospin]"}
    scenarios = {report.scenario_key(r) for r in rows}
    assert scenarios == {("dcgan", None, None, 1, 1), ("dcgan", None, None, 1, 2), ("dcgan", None, None, 16, 1),
                         ("dcgan", None, None, 16, 2), ("cyclegan_a2b", 16, None, 1, 1),
                         ("cyclegan_a2b", 16, None, 1, 2)}
    assert len(rows) == len(scenarios) * len(labels)
    for r in rows:
        assert r["errors"] == 0, r
        assert r["requests"] >= r["concurrency"] * 2 and r["p50_ms"] > 0 and r["images_per_s"] > 0
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_vs_eager"] > 0
        assert len(r["round_images_per_s"]) == 2 and all(x > 0 for x in r["round_images_per_s"])
        if r["backend"] == "eager":
            assert r["throughput_vs_eager"] == 1.0
    assert any(f["figure"].startswith("dcgan: ONNX Runtime") for f in doc["figures"])
    md = (folder / "bench.md").read_text()
    assert "| dcgan | - | - | 16 | 2 | triton-grpc[nobatch] |" in md and "![throughput and latency](bench.png)" in md
    assert (folder / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_the_soak_mix_asks_every_published_model_what_its_kind_takes(published):
    """Every call of a client's mix, on every published model, answered by the in-process backend: a kind the
    mix asks the wrong way (a diffusion model asked to sample) fails here, not minutes into a soak."""
    from ganexport.benchmarks.soak import triton_requests
    from ganexport.repository import default_models
    from ganexport.serving.backends import connect

    repo, _ = published
    models = default_models(repo)
    with connect("onnxruntime", repository=repo) as backend:
        kinds = {backend.metadata(m).kind for m in models}
        calls = triton_requests(backend, models, seed=0)
        answers = [call() for call in calls]
    assert kinds >= {"sample", "translate", "diffuse", "encode", "edit"}
    assert len(answers) == len(calls) >= 2 * len(models)
    assert all(isinstance(a, np.ndarray) and a.size for a in answers)


@pytest.mark.integration
def test_soak_against_triton_reports_zero_errors_p99_and_memory(published, tmp_path):
    repo, _ = published
    out = _invoke(["--soak", "--repository", str(repo), "--model", "dcgan,cgan,cyclegan_a2b", "--duration", "3",
                   "--warmup", "1", "--concurrency", "3", "--target", "triton-http", "--out", str(tmp_path)]).output
    assert out.startswith("soak: 3 clients") and "PASS" in out
    doc = json.loads((tmp_path / hardware.slug() / "soak-triton-http.json").read_text())
    assert doc["errors"] == 0 and doc["requests"] > 10 and doc["p99_ms"] > 0
    mem = doc["memory"]
    assert mem["watched"] and mem["baseline_mb"] > 50 and isinstance(mem["growth_pct"], float)
    assert "| requests | errors |" in (tmp_path / hardware.slug() / "soak-triton-http.md").read_text()


@pytest.mark.integration
@pytest.mark.slow
def test_soak_against_the_demo_queue(published, tmp_path):
    repo, _ = published
    _invoke(["--soak", "--repository", str(repo), "--model", "dcgan,cyclegan_a2b,ddpm", "--duration", "4",
             "--warmup", "1", "--concurrency", "2", "--target", "demo", "--out", str(tmp_path), "--name", "soak-demo"])
    doc = json.loads((tmp_path / hardware.slug() / "soak-demo.json").read_text())
    assert doc["errors"] == 0 and doc["requests"] >= 2, doc["error_examples"]
    assert doc["memory"]["watched"] and doc["memory"]["baseline_mb"] > 100  # demo + Triton + stubs


def test_an_unpublished_model_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(bench, ["--repository", str(tmp_path), "--model", "nope"])
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output


def test_a_run_whose_every_scenario_is_skipped_is_refused_and_keeps_the_last_results(published, tmp_path):
    out = tmp_path / "out"
    args = ["--repository", str(published[0]), "--model", "cyclegan_a2b", "--backends", "onnxruntime", "--batch", "1",
            "--concurrency", "1", "--duration", "0.05", "--rounds", "1", "--warmup", "0", "--out", str(out)]
    _invoke([*args, "--size", "16"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before
    result = CliRunner().invoke(bench, [*args, "--size", "100000"])
    assert result.exit_code == 2 and "nothing to measure: every scenario was skipped" in result.output, result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- pieces


def test_scenarios_skip_batches_above_the_maximum():
    sigs = {s.name: s for s in catalog.get("cyclegan").signatures()[:1] + catalog.get("cgan").signatures()}
    plan, skipped = runner.scenarios(sigs, [1, 64], [1, 8], [256, 2048])
    assert {(s.model, s.size, s.batch, s.concurrency) for s in plan} == {
        ("cyclegan_a2b", 256, 1, 1), ("cyclegan_a2b", 256, 1, 8),
        ("cgan", None, 1, 1), ("cgan", None, 1, 8), ("cgan", None, 64, 1), ("cgan", None, 64, 8)}
    assert any("2048" in s for s in skipped) and any("batch 64" in s for s in skipped)


def test_a_diffusion_model_is_benched_at_each_sampler_step_count_and_checked_against_in_process():
    sigs = {s.name: s for s in catalog.get("ddpm").signatures() + catalog.get("dcgan").signatures()}
    plan, _ = runner.scenarios(sigs, [1, 64], [1], [256], steps=[10, 25])
    assert {(s.model, s.steps, s.batch) for s in plan} == {
        ("ddpm", 10, 1), ("ddpm", 10, 64), ("ddpm", 25, 1), ("ddpm", 25, 64), ("dcgan", None, 1), ("dcgan", None, 64)}
    row = lambda backend, p50: {"model": "ddpm", "size": None, "steps": 25, "batch": 64, "concurrency": 1,  # noqa: E731
                                "backend": backend, "kind": backend, "variant": None, "p50_ms": p50,
                                "images_per_s": 64 / p50 * 1000}
    found = report.figures(report.add_ratios([row("onnxruntime", 3000.0), row("triton-grpc", 3900.0)]))
    ratio = next(f for f in found if f["figure"].startswith("ddpm 25 steps batch 64: triton-grpc"))
    assert ratio["value"] == 1.3 and ratio["target"] == "<= 1.2" and not ratio["met"]


def test_variant_parsing_and_the_config_it_writes(published, tmp_path):
    v = Variant.parse("t1:instances=2,max_queue_delay_us=0,intra_op_threads=1,execution_mode=parallel")
    assert v.knobs == {"instances": 2, "max_queue_delay_us": 0, "intra_op_threads": 1, "execution_mode": "parallel"}
    assert v.applies_to("triton-grpc") and not v.applies_to("onnxruntime") and not v.applies_to("eager")
    assert Variant.parse("t1:intra_op_threads=1").applies_to("onnxruntime")
    for bad in ("nolabel", ":x=1", "a:threads=1", "a:graph_optimization=max"):
        with pytest.raises(ValueError):
            Variant.parse(bad)
    repo, _ = published
    configs = variant_configs(repo, ["dcgan"], Variant.parse("x:dynamic_batching=false,intra_op_threads=1"))
    assert list(configs) == ["dcgan"]
    config = configs["dcgan"]
    assert "dynamic_batching" not in config and 'key: "ort_intra_op_threads" value: { string_value: "1" }' in config


def test_config_pbtxt_knobs():
    sig = catalog.get("dcgan").signatures()[0]
    assert "dynamic_batching" not in config_pbtxt(sig, dynamic_batching=False)
    config = config_pbtxt(sig, max_queue_delay_us=250, ort_options={"graph_optimization": "basic"})
    assert "max_queue_delay_microseconds: 250" in config and '"ort_graph_optimization"' in config
    with pytest.raises(ValueError):
        config_pbtxt(sig, runtime="torchscript", ort_options={"intra_op_threads": 1})


def test_session_options_from_config_strings():
    import onnxruntime as ort

    opts = session_options(intra_op_threads="1", graph_optimization="extended", execution_mode="parallel",
                           allow_spinning="False")
    assert opts.intra_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError):
        session_options(graph_optimization="max")


def test_perf_analyzer_command_matches_the_scenario(tmp_path):
    sig = catalog.get("cyclegan").signatures()[0]
    cmd = perf_analyzer.command(tmp_path / "perf_analyzer", "cyclegan_a2b", sig, protocol="grpc", url="h:1", batch=2,
                                concurrency=8, size=256, window_ms=500, csv_path=tmp_path / "x.csv")
    text = " ".join(cmd)
    assert "-m cyclegan_a2b -i grpc -u h:1 -b 2 --concurrency-range 8:8" in text
    assert "--shape image:256,256,3" in text and "--input-data zero" in text


def test_figures_compare_within_a_scenario():
    def row(backend, p50, ips, model="cyclegan_a2b", size=256, conc=1, variant=None, kind=None):
        return {"model": model, "size": size, "batch": 1, "concurrency": conc, "backend": backend, "p50_ms": p50,
                "images_per_s": ips, "kind": kind or backend.split("[")[0], "variant": variant}

    rows = report.add_ratios([
        row("eager", 10, 100), row("onnxruntime", 8, 125), row("triton-grpc", 9, 110),
        row("eager", 1, 1000, "dcgan", None, 8), row("onnxruntime", 1, 900, "dcgan", None, 8),
        row("triton-grpc", 4, 2000, "dcgan", None, 8),
        row("triton-grpc[off]", 5, 800, "dcgan", None, 8, {"dynamic_batching": False})])
    assert rows[1]["throughput_vs_eager"] == 1.25 and rows[1]["p50_speedup_vs_eager"] == 1.25
    found = {f["figure"].split(":")[0]: f for f in report.figures(rows)}
    assert found["cyclegan_a2b 256x256 batch 1"]["value"] == 1.125 and found["cyclegan_a2b 256x256 batch 1"]["met"]
    assert found["dcgan batch 1 x8 clients"]["value"] == 2.5 and found["dcgan batch 1 x8 clients"]["met"]
    assert found["dcgan"]["value"] == 0.9 and not found["dcgan"]["met"]


def test_a_variant_is_compared_with_the_plain_row_round_by_round():
    """Round ratios e^0.1, 1, e^-0.1: geometric mean 1, log sd 0.1, and Student's t for 2 degrees of freedom at
    95% is 4.303 (a table's value), so the interval is exp(+-4.303 * 0.1 / sqrt 3) = 0.780 to 1.282."""
    e = np.exp(0.1)

    def row(backend, rounds, conc=1):
        return {"model": "ddpm", "size": None, "steps": 25, "batch": 1, "concurrency": conc, "backend": backend,
                "kind": backend.split("[")[0], "variant": {} if "[" in backend else None,
                "round_images_per_s": rounds}

    rows = report.add_paired([row("triton-grpc", [10, 10, 10]), row("triton-grpc[today]", [10 * e, 10, 10 / e]),
                              row("triton-grpc", [8, 9, 10], 2), row("triton-grpc[today]", [4, 4.5, 5], 2),
                              row("triton-grpc[short]", [5, 5], 2)])
    wide, half, short = rows[1]["vs_plain"], rows[3]["vs_plain"], rows[4]["vs_plain"]
    assert (wide["ratio"], wide["low"], wide["high"], wide["rounds"]) == (1.0, 0.78, 1.282, 3)
    assert (half["ratio"], half["low"], half["high"]) == (0.5, 0.5, 0.5)
    assert short is None and "vs_plain" not in rows[0]  # two rounds say nothing of the spread; plain rows get none
    lines = report.paired_lines(rows)
    assert len(lines) == 2 and lines[0].endswith("not told apart") and lines[1].endswith("slower")
    assert lines[0].startswith("ddpm 25 steps batch 1 x1: triton-grpc[today] / triton-grpc images/s = 1.000")


def test_batching_figure_pairs_each_queue_delay_with_the_batching_off_row_of_the_same_other_knobs():
    def row(backend, ips, variant=None):
        return {"model": "dcgan", "size": None, "batch": 1, "concurrency": 8, "backend": backend, "p50_ms": 1.0,
                "images_per_s": ips, "kind": "triton-grpc", "variant": variant}

    rows = [row("triton-grpc", 1200), row("triton-grpc[off]", 1000, {"dynamic_batching": False}),
            row("triton-grpc[d2]", 2100, {"max_queue_delay_us": 2000}),
            row("triton-grpc[t1]", 5000, {"intra_op_threads": 1}),  # another knob: not a batching figure
            row("triton-grpc[t1off]", 500, {"intra_op_threads": 1, "dynamic_batching": False})]
    got = {f["figure"].split(": ")[1].split(" throughput")[0]: f["value"] for f in report.figures(rows)}
    assert got == {"triton-grpc / triton-grpc[off]": 1.2, "triton-grpc[d2] / triton-grpc[off]": 2.1,
                   "triton-grpc[t1] / triton-grpc[t1off]": 10.0}


def test_hardware_slug():
    assert hardware.slug({"kind": "gpu", "gpu": "NVIDIA H100 80GB HBM3"}) == "gpu-nvidia-h100-80gb-hbm3"
    assert hardware.slug({"kind": "cpu", "cpu": "AMD EPYC", "simd": "avx512", "cores": 2}) == "cpu-amd-epyc-avx512-2c"
    assert hardware.slug({"kind": "cpu", "cpu": "AMD EPYC", "simd": "avx2", "cores": 2}) == "cpu-amd-epyc-avx2-2c"
    assert hardware.slug({"kind": "cpu", "cpu": "AMD EPYC", "cores": 2}) == "cpu-amd-epyc-2c"  # a record without it
    assert hardware.slug().startswith(("cpu-", "gpu-"))
    assert hardware.describe()["simd"] in ("avx512", "avx2", "avx", "neon", None)


def test_recorded_python_path_is_repo_relative_inside_the_repository():
    root = Path(hardware.__file__).resolve().parent.parent
    assert hardware.repo_relative(str(root / ".venv" / "bin" / "python3")) == ".venv/bin/python3"
    assert hardware.repo_relative("/usr/bin/python3") == "/usr/bin/python3"


def test_a_plain_bench_run_never_writes_the_recorded_results(published, tmp_path, monkeypatch):
    """Without --record, results go to ./bench-results, so a quick try cannot overwrite docs/benchmarks.md's files."""
    from ganexport.benchmarks.bench_cli import RECORDED

    before = {p: p.stat().st_mtime_ns for p in RECORDED.rglob("*")}
    monkeypatch.chdir(tmp_path)
    _invoke(["--repository", str(published[0]), "--model", "dcgan", "--backends", "onnxruntime", "--batch", "1",
             "--concurrency", "1", "--duration", "0.05", "--rounds", "1", "--warmup", "0"])
    assert (tmp_path / "bench-results" / hardware.slug() / "bench.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in RECORDED.rglob("*")} == before


def test_a_recorded_result_names_no_folder_of_the_machine_it_ran_on(tmp_path):
    repo = tmp_path / "repo"
    doc = {"command": f"ganexport bench --repository {repo} --record", "notes": [f"x: not published in {repo}"]}
    assert report.portable(doc, repo) == {"command": "ganexport bench --repository REPO --record",
                                          "notes": ["x: not published in REPO"]}
    assert report.portable(doc, Path("model_repository")) == doc
