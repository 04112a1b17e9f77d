"""``python -m slideqc.prefect1 --check-server``, ``--check-docker`` or ``--check-params``: checks in seconds."""

from __future__ import annotations

import argparse
import sys

from slideqc import cli
from slideqc.prefect1.params import BadParams, check_params
from slideqc.prefect1.probes import NoServer, check_docker, check_server


def main(argv: list[str] | None = None) -> int:
    """Check, in seconds, what Prefect 1's server needs, or a parameter file; one line either way.

    ``--check-server``: does the configured Prefect server answer (before ``prefect create
    project`` and ``prefect agent local start``, which otherwise wait about a minute and end
    in a traceback)? ``--check-docker``: can this machine run the server at all (before
    ``prefect server start``, which otherwise ends in a long docker-compose traceback)?
    Exit 0 with what answers, else exit 3 with what to do.

    ``--check-params params.json -p FLOW.py``: can ``prefect run -p FLOW.py --param-file
    params.json`` use this file? Exit 0 with what it sets, else exit 2 with one line
    (:mod:`~slideqc.prefect1.params`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m slideqc.prefect1", description=(main.__doc__ or "").partition("\n")[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--check-server", action="store_true", help="ask the configured Prefect server to answer (3 s)")
    which.add_argument(
        "--check-docker", action="store_true", help="check that docker-compose and a Docker engine are here (5 s)"
    )
    which.add_argument(
        "--check-params",
        metavar="PARAMS_JSON",
        help="check a parameter file for `prefect run -p FLOW.py --param-file PARAMS_JSON` (needs -p)",
    )
    parser.add_argument(
        "-p", "--path", metavar="FLOW.py", help="with --check-params: the flow's file, as prefect run's -p"
    )
    args = parser.parse_args(argv)
    if args.check_params is not None:
        if not args.path:
            parser.error("--check-params needs -p FLOW.py, the flow the file is for")
        return _check_params(args.check_params, args.path)
    try:
        if args.check_docker:
            print(f"this machine can run the Prefect 1 server: Docker engine {check_docker()}, docker-compose found")
        else:
            print(f"a Prefect server answers at {check_server()}")
    except NoServer as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_NO_SERVER
    return 0


def _check_params(params_file: str, flow_file: str) -> int:
    from prefect.utilities.storage import extract_flow_from_file

    try:
        flow = extract_flow_from_file(file_path=flow_file)
    except (OSError, ValueError) as error:  # no such file; a file without a flow
        print(f"error: {flow_file}: no flow to check against ({error})", file=sys.stderr)
        return cli.EXIT_USAGE
    try:
        values = check_params(params_file, flow)
    except BadParams as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_USAGE
    given = ", ".join(f"{name}={value!r}" for name, value in values.items()) or "nothing"
    print(f"{params_file}: good for flow {flow.name!r}: {given}; the other parameters keep their defaults")
    return 0


if __name__ == "__main__":
    sys.exit(main())
