"""Run every benchmark with its defaults (the Makefile's `make bench` target).

Why a runner: one command that leaves both JSON records side by side in benchmarks/results/.
Arguments are not forwarded; run a benchmark module directly to change its settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from benchmarks import encode_throughput, search_latency


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m benchmarks.run_all", description=__doc__.split("\n\n")[0]
    ).parse_args(argv)
    encode_throughput.main([])
    search_latency.main([])


if __name__ == "__main__":
    main()
