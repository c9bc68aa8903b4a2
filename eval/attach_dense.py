"""Give an index the dense side of another index built from the same corpus, for hybrid evals.

Why: every trained sparse model of an experiment is evaluated in hybrid with the same dense
model over the same documents; encoding SciFact with MiniLM again for each (minutes of CPU)
would only reproduce identical rows. This copies `dense/` across after checking that both
indexes hold the same documents in the same order (dense rows are addressed by that order).

    python -m sparseretr.eval.attach_dense TARGET_INDEX SOURCE_INDEX
"""

from __future__ import annotations

import argparse
import sys

from sparseretr.index.attach import copy_dense


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target")
    p.add_argument("source")
    a = p.parse_args(argv)
    try:
        print(f"attached: {copy_dense(a.target, a.source)}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
