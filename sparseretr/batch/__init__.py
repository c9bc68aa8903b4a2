"""Resumable batch indexing: `sparseretr index build` on one machine or on Ray Data.

The corpus is streamed into fixed shards (shard i = stream positions [i*S, (i+1)*S)) that are
encoded and written one by one into `<out>.work/`; a killed job resumes where it stopped, and
the final index is identical to an uninterrupted build. See job.py for the phases.
"""

from sparseretr.batch.job import (
    DEFAULT_SHARD_SIZE,
    BatchOptions,
    build_batch,
    build_from_corpus,
    finished_build,
)
from sparseretr.batch.workdir import WorkDirError, work_dir_for

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "BatchOptions",
    "WorkDirError",
    "build_batch",
    "build_from_corpus",
    "finished_build",
    "work_dir_for",
]
