"""``python -m slideqc.prefect1 --check-server``: does the Prefect server answer? In seconds, not minutes."""

from __future__ import annotations

import sys

from slideqc import cli
from slideqc.prefect1.probes import NoServer, check_server


def main(argv: list[str] | None = None) -> int:
    """``python -m slideqc.prefect1 --check-server``: does the Prefect server answer? In seconds, not minutes.

    Run it before ``prefect create project`` and ``prefect agent local start``, which
    otherwise wait about a minute and end in a traceback when no server answers.
    Exit 0 with the server's address, else exit 3 with what to do.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m slideqc.prefect1", description=(main.__doc__ or "").partition("\n")[0]
    )
    parser.add_argument(
        "--check-server",
        action="store_true",
        required=True,
        help="ask the configured Prefect server to answer (3 s at most)",
    )
    parser.parse_args(argv)
    try:
        url = check_server()
    except NoServer as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_NO_SERVER
    print(f"a Prefect server answers at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
