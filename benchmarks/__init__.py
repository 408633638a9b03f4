"""The project's benchmarks: ``python -m benchmarks [--json] [--only NAME ...]``.

Each module listed in :data:`SUITES` has ``run() -> list[Result]`` and measures its
figures beside a floor measured in the same run and the same process, so ratios hold
on any machine.
"""

SUITES: tuple[str, ...] = (
    "benchmarks.bench_otp_core",
    "benchmarks.bench_registry",
    "benchmarks.bench_otp_supervision",
    "benchmarks.bench_storage",
    "benchmarks.bench_cluster",
    "benchmarks.bench_gateway",
    "benchmarks.bench_subscriptions",
    "benchmarks.bench_grpc",
    "benchmarks.bench_hostile",
)
"""Benchmark modules, in the order they run."""
