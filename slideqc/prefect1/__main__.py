"""``python -m slideqc.prefect1 --check-server`` or ``--check-docker``: can exercises 2 and 5 run here? In seconds."""

from __future__ import annotations

import argparse
import sys

from slideqc import cli
from slideqc.prefect1.probes import NoServer, check_docker, check_server


def main(argv: list[str] | None = None) -> int:
    """Check, in seconds, what Prefect 1's server needs; one line either way.

    ``--check-server``: does the configured Prefect server answer (before ``prefect create
    project`` and ``prefect agent local start``, which otherwise wait about a minute and end
    in a traceback)? ``--check-docker``: can this machine run the server at all (before
    ``prefect server start``, which otherwise ends in a long docker-compose traceback)?
    Exit 0 with what answers, else exit 3 with what to do.
    """
    parser = argparse.ArgumentParser(
        prog="python -m slideqc.prefect1", description=(main.__doc__ or "").partition("\n")[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--check-server", action="store_true", help="ask the configured Prefect server to answer (3 s)")
    which.add_argument(
        "--check-docker", action="store_true", help="check that docker-compose and a Docker engine are here (5 s)"
    )
    args = parser.parse_args(argv)
    try:
        if args.check_docker:
            print(f"this machine can run the Prefect 1 server: Docker engine {check_docker()}, docker-compose found")
        else:
            print(f"a Prefect server answers at {check_server()}")
    except NoServer as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_NO_SERVER
    return 0


if __name__ == "__main__":
    sys.exit(main())
