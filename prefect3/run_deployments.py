"""Prefect 3: the slides' QC as flow runs on a server, created with run_deployment.

    python prefect3/run_deployments.py --data-dir data                  # a flow run per 32 slides
    python prefect3/run_deployments.py --data-dir data --batch-size 1   # a flow run per slide

Needs a Prefect server (PREFECT_API_URL) and a process serving the deployments
(python prefect3/serve.py). A run of "Image QC (mapped)/qc-batch" maps the QC
over its slides; with --batch-size 1 a run of "Image QC/qc-slide" checks one.
The runs write the PNGs into this run's folder; the results rows come back as
the flow runs' results, and this script writes results.tsv and report.html as
every other script does. 1.x made the same runs with Client().create_flow_run();
an agent ran them.

Why batches, made --limit at a time: every flow run is a subprocess of the
serving process (seconds of start-up) that waits for the server's next poll;
one that waits longer than 15 s is marked Late, which SQLite refuses under load
(`database is locked`). 128 runs of a slide, made at once, took 5 s a slide.

Exit codes: 0, 1 and 2 as every script; 3 when no Prefect server answers at
PREFECT_API_URL, it cannot reach its database, or it has no such deployment
(one error line; nothing is written then).
"""

import logging
import sys
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from BaseImage import display_name
from prefect3 import common
from prefect3.qc_flow import qc_slide
from prefect3.qc_flow_parallel import qc_slides
from prefect3.serve import BATCH_DEPLOYMENT, DEPLOYMENT
from slideqc import cli
from slideqc.output import results
from slideqc.settings import BATCH_SIZE

POLL_SECONDS = 1.0
EXIT_NO_SERVER = 3
HOW_TO_START = (
    "    prefect server start --host 127.0.0.1 --port 4200\n"
    "    export PREFECT_API_URL=http://127.0.0.1:4200/api   # here and where serve.py runs\n"
    "    python prefect3/serve.py"
)


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
        # /health answers without the database; /ready asks it (a PostgreSQL that is down).
        ready = httpx.get(f"{url.rstrip('/')}/ready", timeout=timeout)
        if ready.status_code != 200:
            return (
                f"the Prefect server at {url} cannot reach its database (GET /ready answered "
                f"{ready.status_code}): is it running? (PREFECT_API_DATABASE_CONNECTION_URL where the server runs)"
            )
    except (httpx.HTTPError, ValueError) as error:
        return f"no Prefect server answers at {url} ({type(error).__name__}: {error})"
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(deployment)
        except (ObjectNotFound, ValueError):  # ValueError: a name that is not FLOW/DEPLOYMENT
            return f"the server at {url} has no deployment {deployment!r}: is prefect3/serve.py running?"
    return None


def run_in_turn(batches: list[list], start, limit: int, timeout: float, on_final) -> None:
    """Make the flow runs ``limit`` at a time, the next as one ends, and hand each to ``on_final`` as it ends.

    Why not all at once: a run made while the serving process is busy waits as Scheduled, and
    after 15 s the server marks it Late, a write that SQLite refuses (`database is locked`) while
    the busy runs write their own. ``start(number, slides)`` makes run ``number`` and returns it;
    ``on_final(slides, FlowRun | None)`` also gets those unfinished after ``timeout`` seconds (None:
    never made). The server is asked about all the runs in flight in one query a second.
    """
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    waiting = list(enumerate(batches, 1))
    running, last = {}, {}
    with get_client(sync_client=True) as client:
        while waiting or running:
            while waiting and len(running) < limit:
                number, names = waiting.pop(0)
                running[start(number, names).id] = names
            query = FlowRunFilter(id=FlowRunFilterId(any_=list(running)))
            last = {run.id: run for run in client.read_flow_runs(flow_run_filter=query, limit=len(running))}
            ended = [run for run in last.values() if run.state is not None and run.state.is_final()]
            for run in ended:
                on_final(running.pop(run.id), run)
            if time.monotonic() > deadline:
                break
            if not ended:
                time.sleep(POLL_SECONDS)
    for run_id, names in running.items():
        on_final(names, last.get(run_id))
    for _, names in waiting:
        on_final(names, None)


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0])
    common.add_prefect_arguments(parser, cache_dir=False)
    group = parser.add_argument_group("deployment")
    group.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"slides per flow run: runs of 'Image QC (mapped)/{BATCH_DEPLOYMENT}', each mapped over "
        f"its slides; 1: a run of 'Image QC/{DEPLOYMENT}' per slide",
    )
    group.add_argument(
        "--limit",
        type=int,
        default=2,
        help="flow runs on the server at once, the next made as one ends: serve.py's --limit",
    )
    group.add_argument(
        "--deployment",
        help=f"the deployment, 'FLOW/DEPLOYMENT' (default: 'Image QC (mapped)/"
        f"{BATCH_DEPLOYMENT}', or 'Image QC/{DEPLOYMENT}' with --batch-size 1)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds to wait for the flow runs; unfinished ones become error rows",
    )
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    one_each = args.batch_size == 1
    deployment = args.deployment or (f"Image QC/{DEPLOYMENT}" if one_each else f"Image QC (mapped)/{BATCH_DEPLOYMENT}")
    flow = qc_slide if one_each else qc_slides
    cli.check_usage(args, flow.parameters.properties)  # usage errors first (exit code 2), then the server (3)
    problem = server_problem(deployment)
    if problem:
        print(
            f"error: {problem}\nStart a server and serve the flow, then run this again:\n{HOW_TO_START}",
            file=sys.stderr,
        )
        return EXIT_NO_SERVER
    qc_run = cli.start_run(args, flow_parameters=flow.parameters.properties)
    batches = cli.chunks(qc_run.file_names, args.batch_size)
    logging.getLogger("slideqc").info(
        "%d flow run(s) of %s for %d slide(s), %d at a time",
        len(batches),
        deployment,
        len(qc_run.file_names),
        args.limit,
    )

    # The serving process has its own working folder: hand it absolute paths.
    settings = dict(redo=args.redo, **qc_run.parameters)

    def start(number: int, names: list):
        paths = [common.path_parameter(Path(name).resolve()) for name in names]
        if one_each:
            return run_deployment(
                deployment,
                timeout=0,
                flow_run_name=f"qc-{display_name(Path(names[0]).name)}",
                tags=["slideqc"],
                parameters=dict(file_name=paths[0], **settings),
            )
        return run_deployment(
            deployment,
            timeout=0,
            flow_run_name=f"qc-batch-{number}-of-{len(batches)}",
            tags=["slideqc"],
            parameters=dict(file_names=paths, **settings),
        )

    def add_rows(names: list, flow_run) -> None:
        state = None if flow_run is None else flow_run.state
        rows = [common.row_from_state(names[0], state)] if one_each else common.rows_from_batch_state(names, state)
        for row in rows:
            if state is None or not state.is_final():
                why = f"{row.reason} after {args.timeout:g} s; is a process serving {deployment}? (python prefect3/serve.py)"
                row = results.error_result(row.file_name, why)
            qc_run.add(row)

    run_in_turn(batches, start, args.limit, args.timeout, add_rows)
    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
