"""Prefect 3: one flow run per slide, created on the server with run_deployment.

    python prefect3/run_deployments.py --data-dir data

Needs a Prefect server (PREFECT_API_URL) and a process serving the deployment
(python prefect3/serve.py). Each run checks one slide and writes its PNGs into
this run's folder; its results row comes back as the flow run's result, and
this script writes results.tsv and report.html as every other script does.
1.x made the same runs with Client().create_flow_run(); an agent ran them.

Exit codes: 0, 1 and 2 as every script; 3 when no Prefect server answers at
PREFECT_API_URL or it has no such deployment (nothing is written then).
"""

import sys
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from prefect3 import common
from prefect3.serve import DEPLOYMENT
from slideqc import cli

POLL_SECONDS = 1.0
EXIT_NO_SERVER = 3
HOW_TO_START = ("    prefect server start --host 127.0.0.1 --port 4200\n"
                "    export PREFECT_API_URL=http://127.0.0.1:4200/api   # here and where serve.py runs\n"
                "    python prefect3/serve.py")


def server_problem(deployment: str, timeout: float = 3.0) -> str | None:
    """Why runs of ``deployment`` cannot be made (no server, no deployment), or None if they can."""
    import httpx
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return "PREFECT_API_URL is not set: these runs need a Prefect server and a process serving the flow"
    try:  # one quick try, instead of the client's retries
        answer = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
        if answer.status_code != 200 or answer.json() is not True:
            return f"{url}: not a Prefect server's API (GET /health answered {answer.status_code})"
    except (httpx.HTTPError, ValueError) as error:
        return f"no Prefect server answers at {url} ({type(error).__name__}: {error})"
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(deployment)
        except (ObjectNotFound, ValueError):  # ValueError: a name that is not FLOW/DEPLOYMENT
            return f"the server at {url} has no deployment {deployment!r}: is prefect3/serve.py running?"
    return None


def wait_for(flow_run_ids: list, timeout: float) -> dict:
    """Poll the server until every flow run is final or ``timeout`` seconds pass; id -> last FlowRun read."""
    deadline = time.monotonic() + timeout
    last = {}
    with get_client(sync_client=True) as client:
        while True:
            last = {run_id: client.read_flow_run(run_id) for run_id in flow_run_ids}
            if all(run.state is not None and run.state.is_final() for run in last.values()):
                return last
            if time.monotonic() > deadline:
                return last
            time.sleep(POLL_SECONDS)


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0])
    common.add_prefect_arguments(parser, cache_dir=False)
    group = parser.add_argument_group("deployment")
    group.add_argument("--deployment", default=f"Image QC/{DEPLOYMENT}", help="the deployment: 'FLOW/DEPLOYMENT'")
    group.add_argument("--timeout", type=float, default=3600,
                       help="seconds to wait for the flow runs; unfinished ones become error rows")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    cli.check_usage(args)  # usage errors first (exit code 2), then the server (3)
    problem = server_problem(args.deployment)
    if problem:
        print(f"error: {problem}\nStart a server and serve the flow, then run this again:\n{HOW_TO_START}",
              file=sys.stderr)
        return EXIT_NO_SERVER
    qc_run = cli.start_run(args)
    file_names = qc_run.file_names

    # The serving process has its own working folder: hand it absolute paths.
    run_dir = str(qc_run.folder.resolve())
    runs = [run_deployment(args.deployment, timeout=0, flow_run_name=f"qc-{Path(name).name}", tags=["slideqc"],
                           parameters=dict(file_name=str(Path(name).resolve()), run_dir=run_dir, redo=args.redo,
                                           tile_threads=qc_run.tile_threads, **qc_run.settings.as_dict()))
            for name in file_names]
    cli.log.info("created %d flow run(s) of %s: %s", len(runs), args.deployment, ", ".join(r.name for r in runs))
    final = wait_for([run.id for run in runs], args.timeout)

    for name, run in zip(file_names, runs, strict=True):
        state = final[run.id].state
        row = common.row_from_state(name, state)
        if state is not None and not state.is_final():
            row.error += f" after {args.timeout:g} s; is a process serving {args.deployment}? (python prefect3/serve.py)"
        qc_run.add(row)

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
