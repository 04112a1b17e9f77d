"""Exercise 2 solution: the serial flow registered to a Prefect server, a flow run per slide.

    prefect backend server && prefect server start        # once, in another terminal
    prefect agent local start                             # in a third: it runs the flow runs
    python solutions/pipeline_prefect_server.py --data-dir data

What changed from pipeline_prefect.py: instead of calling flow.run() here, the
flow is registered to the project "Image QC" (created when missing) and
Client().create_flow_run() asks the server for one run per slide; an agent
runs them. The flow keeps its script as storage, so the agent loads it from
this file; each run writes its slide's pictures and row into one run folder.
"""

import sys
import time
from pathlib import Path

from prefect import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the flow of exercise 1
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # BaseImage and slideqc, wherever this runs

import pipeline_prefect  # noqa: E402

from slideqc import cli  # noqa: E402
from slideqc.prefect1 import add_prefect_arguments  # noqa: E402
from slideqc.prefect1_server import (  # noqa: E402
    add_server_arguments,
    ensure_project,
    print_submitted,
    run_main,
    set_agent_storage,
    submission,
    with_row_per_run,
)

# The flow of exercise 1, plus a last task that writes the slide's row into the run's results.tsv.
flow = with_row_per_run(pipeline_prefect.flow)


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0])
    add_prefect_arguments(parser)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()

    # Invalid usage, or no server answering: one clear message, at once, and nothing written.
    with submission(args) as (params, file_names, writer, cache):
        client = Client()
        ensure_project(client, args.project)
        set_agent_storage(flow, __file__, args.labels)
        flow_id = flow.register(project_name=args.project)

        for name in file_names:
            flow_run_id = client.create_flow_run(
                flow_id=flow_id, run_name=f"{writer.run_dir.name}/{name.name}",
                parameters=dict(file_name=str(name.resolve()), run_dir=str(writer.run_dir.resolve()),
                                cache_dir=str(cache), **params.as_dict()))
            print(f"flow run {flow_run_id}: {name.name}  {client.get_cloud_url('flow-run', flow_run_id)}")

    print(f"{len(file_names)} flow run(s) created in {time.perf_counter() - started:.1f} s")
    print_submitted(writer.run_dir, args.labels, merged=True)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
