"""On-demand benchmarks (never timed in CI); see benchmarks/README.md."""

import sparseretr  # noqa: F401  first, before transformers: see sparseretr/_checkout.py
