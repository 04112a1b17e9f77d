"""Quick checks that a Prefect server (exercises 2 and 5) or a Dask scheduler (``--address``) can run the QC.

Each answers within seconds, in one message that says what to start, where Prefect's
own client would retry for a minute and end in a traceback.
"""

from __future__ import annotations

import prefect

from slideqc import cli

SERVER_COMMANDS = """\
Start a Prefect server (it needs Docker with docker compose), then run this again:
    prefect backend server        # once: talk to a local server, not Prefect Cloud
    prefect server start          # leave it running; the UI is at http://localhost:8080
    prefect agent local start     # in another terminal: it runs the flow runs"""


class NoServer(cli.NoService):
    """No Prefect server answers: reported in one message, exit code 3."""


def check_server(timeout: float = 3.0) -> str:
    """Return the configured Prefect server's API address, after asking it ``query { hello }``.

    Prefect's own client would retry for a minute or more before failing with a traceback.

    Parameters
    ----------
    timeout : float, > 0
        Seconds to wait for the answer.

    Returns
    -------
    str
        The server's API address. Raises NoServer, with what to do, when the backend
        is not a server or nothing answers within ``timeout`` seconds.
    """
    import requests

    if prefect.config.backend != "server":
        raise NoServer(f"Prefect's backend is {prefect.config.backend!r}, not 'server'.\n{SERVER_COMMANDS}")
    url = prefect.config.server.endpoint.rstrip("/")
    try:
        response = requests.post(url, json={"query": "query { hello }"}, timeout=timeout)
    except requests.Timeout:
        raise NoServer(f"no Prefect server answers at {url} (no answer in {timeout:g} s).\n{SERVER_COMMANDS}") from None
    except requests.ConnectionError:
        raise NoServer(f"no Prefect server answers at {url} (cannot connect).\n{SERVER_COMMANDS}") from None
    except requests.RequestException as error:
        raise NoServer(f"{url} is not an address a Prefect server can have ({error}).\n{SERVER_COMMANDS}") from None
    try:
        answer = response.json()
        if "hello" not in (answer.get("data") or {}):
            raise ValueError(answer)
    except (ValueError, AttributeError):
        raise NoServer(
            f"something answers at {url}, but not a Prefect server's API "
            f"(HTTP {response.status_code}).\n{SERVER_COMMANDS}"
        ) from None
    return url


NO_DOCKER_HELP = "do exercises 2 and 5 on the Prefect 3 server instead (README: 'Exercises 2 and 5 without Docker')"


def check_docker(timeout: float = 5.0) -> str:
    """Return the Docker engine's version when this machine can run Prefect 1's server.

    ``prefect server start`` calls the ``docker-compose`` program and needs a running
    engine. Returns the engine's version; raises NoServer, saying what is missing and
    what to do instead, within ``timeout`` seconds (a stopped engine can hang a client).
    """
    import shutil
    import subprocess

    if shutil.which("docker-compose") is None:
        missing = (
            "neither docker nor docker-compose is installed"
            if shutil.which("docker") is None
            else ("docker is installed, but not the docker-compose program `prefect server start` calls")
        )
        raise NoServer(f"this machine cannot run the Prefect 1 server: {missing}; {NO_DOCKER_HELP}")
    try:
        engine = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise NoServer(f"this machine cannot run the Prefect 1 server: no docker program; {NO_DOCKER_HELP}") from None
    except subprocess.TimeoutExpired:
        raise NoServer(
            f"the Docker engine does not answer (no answer in {timeout:g} s): start it, or {NO_DOCKER_HELP}"
        ) from None
    if engine.returncode != 0 or not engine.stdout.strip():
        raise NoServer(
            "the Docker engine is not running (docker info: "
            f"{' '.join(engine.stderr.split())[:200] or 'no answer'}); {NO_DOCKER_HELP}"
        )
    return engine.stdout.strip()


def run_main(main, argv: list[str] | None = None) -> int:
    """cli.run_main (which reports a missing server in one message with exit code 3)."""
    return cli.run_main(main, argv)


# --- a Dask scheduler (exercise 4, --address) -------------------------------------------

SCHEDULER_COMMANDS = """Start a scheduler and a worker with the project's venv active (make installs the project into it):
    dask scheduler --host 127.0.0.1 --port 8786
    dask worker tcp://127.0.0.1:8786 --nthreads 1
or leave out --address to run on this machine."""


def check_scheduler(address: str, timeout: float = 5.0) -> str:
    """Check that a Dask scheduler answers at ``address``, has workers, and that they import the QC.

    Prefect's DaskExecutor would wait half a minute and then fail with a traceback, or
    hand every slide a row that hides the cause.

    Parameters
    ----------
    address : str
        The scheduler's address (``host:8786`` or ``tcp://host:8786``).
    timeout : float, > 0
        Seconds, about, before giving up.

    Returns
    -------
    str
        The address, ``tcp://`` added when it had no scheme. Raises cli.NoService (one
        message, what to do; exit code 3) when the scheduler does not answer, has no
        workers, or they cannot import the QC.
    """
    import socket
    from urllib.parse import urlsplit

    url = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError as error:
        raise cli.NoService(
            f"--address {address}: not a scheduler address ({error}), e.g. tcp://127.0.0.1:8786\n{SCHEDULER_COMMANDS}"
        ) from None
    if parts.scheme not in ("tcp", "tls") or not host:
        raise cli.NoService(
            f"--address {address}: not a scheduler address, e.g. tcp://127.0.0.1:8786\n{SCHEDULER_COMMANDS}"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        why = f"no answer in {timeout:g} s" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise cli.NoService(f"no Dask scheduler answers at {url} ({why}).\n{SCHEDULER_COMMANDS}") from None
    from distributed import Client

    try:
        with Client(url, timeout=timeout, set_as_default=False) as client:
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=timeout)
                except TimeoutError:
                    raise cli.NoService(
                        f"the Dask scheduler at {url} has no workers (none joined in "
                        f"{timeout:g} s).\n{SCHEDULER_COMMANDS}"
                    ) from None
            problems = client.run(worker_import_problem)
    except cli.NoService:
        raise
    except Exception as error:  # noqa: BLE001 (any failure here is the cluster's, said in one line)
        text = " ".join(f"{type(error).__name__}: {error}".split())
        raise cli.NoService(f"the Dask scheduler at {url} cannot run the QC: {text}\n{SCHEDULER_COMMANDS}") from None
    bad = {worker: problem for worker, problem in problems.items() if problem}
    if bad:
        worker, problem = next(iter(bad.items()))
        raise cli.NoService(
            f"{len(bad)} of {len(problems)} Dask worker(s) at {url} cannot import the QC "
            f"(worker {worker}: {problem}).\n{SCHEDULER_COMMANDS}"
        )
    return url


def worker_import_problem() -> str:
    """Run on each Dask worker: "" when it imports the QC, else why not (one line)."""
    import importlib

    try:
        for module in ("BaseImage", "slideqc.qc", "slideqc.output.run"):
            importlib.import_module(module)
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    return ""
