"""Dask worker preload: the opt-in fix of Prefect's per-task configuration copy in a Dask worker process.

    dask worker tcp://127.0.0.1:8786 --nthreads 1 --preload benchmarks/fast_context_preload.py

A Dask cluster's workers are new processes (spawned, not forked), so a fix
turned on in the client does not reach them; Dask runs ``dask_setup`` in each
worker as it starts. benchmarks/with_fast_context.py sets it for the local
cluster that ``--executor dask`` starts (Dask's ``distributed.worker.preload``).
"""

from slideqc import prefect1


def dask_setup(worker) -> None:
    prefect1.skip_identical_config_merge()
