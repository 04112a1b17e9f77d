"""Prefect 3: serve the QC flows as deployments; this process runs the flow runs made for them.

    prefect server start                                   # in one terminal (or use Prefect Cloud)
    python prefect3/serve.py                               # in a second: serves the two deployments
    python prefect3/run_deployments.py --data-dir data     # in a third: a flow run per 32 slides

1.x registered the flow to a project and an agent ran its flow runs; in 3.x
`flow.serve()` makes a deployment and is itself the process that polls the
server and runs each flow run in a subprocess, up to --limit at a time. Here
`serve()` does the same for two deployments at once: "Image QC/qc-slide" (one
slide a run, as from the UI) and "Image QC (mapped)/qc-batch" (a list of slides
a run, mapped over threads: a lab's batch of hundreds). A worker on a process
work pool (`prefect worker start --pool NAME`) does the same for deployments
made with `flow.deploy()`. Stop it with Ctrl-C.
"""

import argparse
import os
import sys

from prefect import serve

from prefect3.qc_flow import qc_slide
from prefect3.qc_flow_parallel import qc_slides

DEPLOYMENT = "qc-slide"
BATCH_DEPLOYMENT = "qc-batch"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--name", default=DEPLOYMENT, help="the one-slide deployment; full name 'Image QC/NAME'")
    parser.add_argument(
        "--batch-name", default=BATCH_DEPLOYMENT, help="the batch deployment; full name 'Image QC (mapped)/NAME'"
    )
    parser.add_argument("--limit", type=int, default=2, help="flow runs executed at the same time")
    parser.add_argument("--workers", type=int, default=2, help="slides a batch run checks at the same time (threads)")
    parser.add_argument(
        "--poll-seconds",
        type=int,
        default=2,
        help="how often to ask the server for runs to start (Prefect's default: 10)",
    )
    args = parser.parse_args(argv)
    for option in ("limit", "workers", "poll_seconds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')}: must be >= 1, got {getattr(args, option)}")
    # Each run starts in a subprocess that imports the flow from its file (its decorator's task
    # runner), so the batch's thread pool size travels as the setting that task runner reads.
    os.environ["PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS"] = str(args.workers)
    serve(
        qc_slide.to_deployment(
            name=args.name,
            tags=["slideqc"],
            description="QC of one slide: tissue, blur, rescan decision; PNGs into run_dir",
        ),
        qc_slides.to_deployment(
            name=args.batch_name,
            tags=["slideqc"],
            description="QC of a list of slides, mapped; one results row per slide",
        ),
        limit=args.limit,
        query_seconds=args.poll_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
