"""Slide QC in plain Python, in parallel: the baseline the Prefect flows are compared with.

The same steps as pipeline.py (slideqc.qc.STEPS, run by slideqc.output.run.check_slide),
one slide per worker process.

    python pipeline_parallel.py --data-dir data --workers 2
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from slideqc import cli
from slideqc.output.run import check_slide


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv, parallel=True)
    qc_run = cli.start_run(args)

    check = partial(check_slide, settings=qc_run.settings, run_dir=qc_run.folder, tile_threads=qc_run.tile_threads)
    # The workers end with this process, even when it is killed (cli.end_with_parent).
    with ProcessPoolExecutor(
        max_workers=args.workers, initializer=cli.end_with_parent, initargs=(os.getpid(),)
    ) as pool:
        for row in pool.map(check, qc_run.file_names):
            qc_run.add(row)

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
