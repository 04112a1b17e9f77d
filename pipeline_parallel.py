"""Slide QC in plain Python, in parallel: the baseline the Prefect flows are compared with.

The same steps as pipeline.py, one slide per worker process.

    python pipeline_parallel.py --data-dir data --workers 2
"""

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from pipeline import check_slide
from slideqc import cli


def _single_threaded_worker():
    # The pool already uses every core; a slide's own tile threads would oversubscribe them.
    os.environ["SLIDEQC_TILE_WORKERS"] = "1"


def main(argv=None) -> int:
    args = cli.build_parser(__doc__.splitlines()[0], workers=True).parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()
    params, file_names, writer = cli.start_run(args)

    with ProcessPoolExecutor(max_workers=args.workers, initializer=_single_threaded_worker) as pool:
        for row in pool.map(partial(check_slide, params=params, run_dir=writer.run_dir), file_names):
            writer.add(row)

    return cli.finish_run(writer, started)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
