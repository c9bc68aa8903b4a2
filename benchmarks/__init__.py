"""On-demand benchmarks (never timed in CI); see benchmarks/README.md."""
