"""``ganexport bench``: side-by-side latency and throughput of every serving path, and the soak test.

    targets.py        the rows: eager PyTorch, TorchScript, ONNX Runtime, Triton HTTP/gRPC (+ tuning variants)
    runner.py         scenarios and the interleaved measurement rounds
    report.py         JSON, markdown table and PNG plot under results/<hardware>/
    perf_analyzer.py  NVIDIA's perf_analyzer (tritonclient 2.51.0 wheel) against the same server
    soak.py           N clients for minutes: errors, p99, server memory growth
    hardware.py       what the figures were measured on
    bench_cli.py      the click command

Results are data: benchmarks/results/<hardware-slug>/*.{json,md,png}; docs/benchmarks.md explains them.
"""
