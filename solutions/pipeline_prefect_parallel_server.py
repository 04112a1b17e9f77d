"""Exercise 5 solution: the mapped flow registered to a Prefect server, one flow run for all slides.

    prefect backend server && prefect server start        # once, in another terminal
    prefect agent local start                             # in a third: it runs the flow run
    python solutions/pipeline_prefect_parallel_server.py --data-dir data --executor threads --workers 2

What changed from pipeline_prefect_parallel.py: instead of flow.run(executor=...),
the executor is set on the flow (LocalDaskExecutor by default), the flow is
registered to the project "Image QC" (created when missing), and
Client().create_flow_run() asks the server for one run over the list of files.
The agent loads the flow from this file, executor included, so its run is parallel.
"""

import os
import sys
import time
from pathlib import Path

from prefect import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the flow of exercise 3
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # BaseImage and slideqc, wherever this runs

import pipeline_prefect_parallel  # noqa: E402

from slideqc import cli  # noqa: E402
from slideqc.prefect1 import add_prefect_arguments, make_executor  # noqa: E402
from slideqc.prefect1_server import (  # noqa: E402
    add_server_arguments,
    ensure_project,
    print_submitted,
    run_main,
    set_agent_storage,
    submission,
)

# The agent runs this file again to get the flow: the executor chosen on the command line
# reaches it through the run config's environment (see main).
flow = pipeline_prefect_parallel.flow.copy()
flow.executor = make_executor(os.environ.get("SLIDEQC_EXECUTOR", "threads"),
                              int(os.environ.get("SLIDEQC_WORKERS", os.cpu_count() or 1)),
                              os.environ.get("SLIDEQC_ADDRESS") or None)


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0], workers=True)
    add_prefect_arguments(parser, parallel=True)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()

    # Invalid usage, or no server answering: one clear message, at once, and nothing written.
    with submission(args) as (params, file_names, writer, cache):
        executor = dict(SLIDEQC_EXECUTOR=args.executor, SLIDEQC_WORKERS=str(args.workers),
                        SLIDEQC_ADDRESS=args.address or "")
        flow.executor = make_executor(args.executor, args.workers, args.address)
        client = Client()
        ensure_project(client, args.project)
        set_agent_storage(flow, __file__, args.labels, env=executor)
        flow_id = flow.register(project_name=args.project)

        flow_run_id = client.create_flow_run(
            flow_id=flow_id, run_name=f"{writer.run_dir.name} ({len(file_names)} slides)",
            parameters=dict(file_names=[str(name.resolve()) for name in file_names],
                            run_dir=str(writer.run_dir.resolve()), cache_dir=str(cache), **params.as_dict()))
        print(f"flow run {flow_run_id}: {len(file_names)} slide(s) on {type(flow.executor).__name__}  "
              f"{client.get_cloud_url('flow-run', flow_run_id)}")

    print(f"flow run created in {time.perf_counter() - started:.1f} s")
    print_submitted(writer.run_dir, args.labels, merged=False)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
