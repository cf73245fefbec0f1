"""Instances and ONNX Runtime threads per model, planned from the cores Triton gets, and `serve`'s overrides.

The plan is a rule (serving/instances.py; docs/benchmarks.md has the measurement behind it). These tests hold
the rule to its kinds and cores, check that the published files are never touched (only the served view
is rewritten), and start the real Triton to see that it runs what the plan says: the instance count and
thread parameter in the config Triton reports, one stub process per instance, and an answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ganexport.serving.instances import HEAVY_KINDS, MAX_INSTANCES, describe_plan, plan, rewrite, tuned_configs


def test_heavy_kinds_get_more_instances_than_light_ones_and_every_core_per_request():
    for cores in (1, 2, 8, 64):
        for kind in HEAVY_KINDS:
            instances, threads = plan(kind, cores)
            assert threads == cores and instances == min(2, cores)  # a lone request still gets every core
        assert plan("sample", cores) == plan("encode", cores) == plan("edit", cores) == (1, cores)


def test_the_rewrite_sets_instances_and_threads_once_and_leaves_the_rest(published):
    repo, _ = published
    config = (repo / "cyclegan_a2b" / "config.pbtxt").read_text()
    twice = rewrite(rewrite(config, 3, 5), 2, 1)
    assert "{ count: 2 kind: KIND_CPU }" in twice and twice.count("ort_intra_op_threads") == 1
    assert '"ort_intra_op_threads" value: { string_value: "1" }' in twice
    strip = lambda text: [line for line in text.splitlines()  # noqa: E731
                          if "count:" not in line and "ort_intra" not in line and "ort_share" not in line]
    assert strip(twice) == strip(config)
    # several instances of several threads share the cores; one instance, or one thread each, has nothing to share
    shared = '"ort_share_cores" value: { string_value: "true" }'
    assert rewrite(rewrite(config, 2, 2), 2, 2).count(shared) == 1
    assert shared not in rewrite(rewrite(config, 2, 2), 2, 1) and shared not in rewrite(config, 1, 2)


def test_only_cpu_onnxruntime_models_are_planned(published, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    for name in ("cyclegan_a2b", "dcgan", "dcgan_torchscript"):
        shutil.copytree(published[0] / name, repo / name)
    gpu = repo / "dcgan" / "config.pbtxt"
    gpu.write_text(gpu.read_text().replace("KIND_CPU", "KIND_GPU"))
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    configs = tuned_configs(repo, ["cyclegan_a2b", "dcgan", "dcgan_torchscript"], cores=4)
    assert list(configs) == ["cyclegan_a2b"]  # the GPU model and the TorchScript twin are served as published
    assert "{ count: 2 kind: KIND_CPU }" in configs["cyclegan_a2b"] and 'string_value: "4" }' in configs["cyclegan_a2b"]
    assert tuned_configs(repo, ["cyclegan_a2b"], cores=4, instances=1, threads=3)["cyclegan_a2b"].count(
        '"ort_intra_op_threads" value: { string_value: "3" }') == 1
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_serve_offers_the_overrides_with_their_defaults():
    from ganexport.serving.serve_cli import serve

    out = CliRunner().invoke(serve, ["--help"], terminal_width=200).output
    assert "--instances N" in out and "--threads N" in out and "planned per kind of model" in out
    for value in ("0", str(MAX_INSTANCES + 1)):  # a typo of 1000 would fill the machine's memory with stubs
        bad = CliRunner().invoke(serve, ["--instances", value])
        assert bad.exit_code == 2 and "--instances" in bad.output, value
    bad = CliRunner().invoke(serve, ["--timeout", "0"])  # no server could be ready in no time
    assert bad.exit_code == 2 and "--timeout" in bad.output


def test_the_start_up_line_says_the_numbers_each_kind_gets_with_one_override():
    heavy, light = plan(HEAVY_KINDS[0], 4), plan("sample", 4)
    line = describe_plan(threads=1, cores=4)
    assert f"diffusion models {heavy[0]} instance(s) x 1 thread(s)" in line and f"others {light[0]} x 1 " in line
    assert "sharing the cores" not in line  # one thread per instance shares nothing
    line = describe_plan(instances=3, cores=4)
    assert f"3 instance(s) x {heavy[1]} thread(s), sharing the cores" in line and f"others 3 x {light[1]} " in line
    assert "more than the 4 cores" in describe_plan(threads=8, cores=4)
    assert "more than" not in describe_plan(cores=4)


@pytest.mark.integration
def test_triton_runs_the_planned_instances_and_threads(published):
    from ganexport.serving.backends import connect
    from ganexport.serving.instances import triton_cores
    from ganexport.serving.triton_server import TritonServer, free_port

    planned = plan("translate", triton_cores())[0]
    with TritonServer(published[0], models=("cyclegan_a2b", "dcgan"), http_port=free_port(), grpc_port=free_port(),
                      metrics_port=0, planned=True, threads=1) as server:
        config = server._json("/v2/models/cyclegan_a2b/config")
        assert [g["count"] for g in config["instance_group"]] == [planned]
        assert config["parameters"]["ort_intra_op_threads"]["string_value"] == "1"
        stubs = server.stub_pids()
        assert len(stubs["cyclegan_a2b"]) == planned and len(stubs["dcgan"]) == 1
        with connect("triton-grpc", url=server.grpc_url) as backend:
            out = backend.translate("cyclegan_a2b", np.full((2, 16, 16, 3), 90, np.uint8))
        assert out.shape == (2, 16, 16, 3)
    assert (published[0] / "cyclegan_a2b" / "config.pbtxt").read_text().count("count: 1 kind: KIND_CPU") == 1



@pytest.mark.integration
def test_instances_running_side_by_side_share_the_cores_and_answer_the_same(published):
    """Two clients at once on the planned translator: some runs go to the 1-thread session, and every
    answer equals the one a request alone gets (within the one uint8 level thread counts may cost)."""
    from concurrent.futures import ThreadPoolExecutor

    from ganexport.serving.backends import connect
    from ganexport.serving.instances import triton_cores
    from ganexport.serving.triton_server import TritonServer, free_port

    if triton_cores() < 2:
        pytest.skip("one core: the plan runs one instance, nothing to share")
    image = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    with TritonServer(published[0], models=("cyclegan_a2b",), http_port=free_port(), grpc_port=free_port(),
                      metrics_port=0, planned=True, threads=2) as server:
        config = server._json("/v2/models/cyclegan_a2b/config")
        assert config["parameters"]["ort_share_cores"]["string_value"] == "true"

        def client(_):
            with connect("triton-grpc", url=server.grpc_url) as backend:
                return [backend.translate("cyclegan_a2b", image) for _ in range(30)]

        with connect("triton-grpc", url=server.grpc_url) as backend:
            alone = backend.translate("cyclegan_a2b", image).astype(int)
        with ThreadPoolExecutor(2) as pool:
            answers = [a for batch in pool.map(client, range(2)) for a in batch]
        log = server.log_path.read_text()
    assert "a 1-thread session for runs beside it" in log
    assert max(int(np.abs(a.astype(int) - alone).max()) for a in answers) <= 1
