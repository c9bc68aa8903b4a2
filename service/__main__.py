"""``python -m sparseretr.service [--index DIR] [--port N] ...``: same as ``sparseretr serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sparseretr.service.server import add_serve_arguments, serve, settings_from_args


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sparseretr.service", description=__doc__)
    add_serve_arguments(p)
    serve(settings_from_args(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
