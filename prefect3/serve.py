"""Prefect 3: serve the QC flow as a deployment; this process runs the flow runs made for it.

    prefect server start                                   # in one terminal (or use Prefect Cloud)
    python prefect3/serve.py                               # in a second: serves "Image QC/qc-slide"
    python prefect3/run_deployments.py --data-dir data     # in a third: one flow run per slide

1.x registered the flow to a project and an agent ran its flow runs; in 3.x
`flow.serve()` makes the deployment and is itself the process that polls the
server and runs each flow run in a subprocess, up to --limit at a time. A worker
on a process work pool (`prefect worker start --pool NAME`) does the same for
deployments made with `flow.deploy()`. Stop it with Ctrl-C.
"""

import argparse
import sys

from prefect3.qc_flow import qc_slide

DEPLOYMENT = "qc-slide"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--name", default=DEPLOYMENT, help="deployment name; the full name is 'Image QC/NAME'")
    parser.add_argument("--limit", type=int, default=2, help="flow runs executed at the same time")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit: must be >= 1, got {args.limit}")
    qc_slide.serve(name=args.name, limit=args.limit, tags=["slideqc"],
                   description="QC of one slide: tissue, blur, rescan decision; PNGs into run_dir")
    return 0


if __name__ == "__main__":
    sys.exit(main())
