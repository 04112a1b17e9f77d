"""A small stand-in for a Prefect 1 server's GraphQL API, on 127.0.0.1, for the server solutions' tests.

It answers the operations Prefect 1.4.1's Client sends to register a flow and
create flow runs (found by reading prefect/client/client.py and by running the
scripts against it), keeps what it was told, and records every request. Any
other operation gets a GraphQL error, so a script that starts sending
something new fails its test instead of passing by accident.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pendulum
import prefect
from prefect.engine.state import Scheduled, State
from prefect.utilities.graphql import decompress

OPERATION = re.compile(r"^\s*(query|mutation)\b[^{]*\{\s*(\w+)", re.S)
NAME_EQ = re.compile(r'name:\s*\{\s*_eq:\s*"((?:[^"\\]|\\.)*)"')
ID_ARG = re.compile(r'id:\s*"([^"]+)"')
ID_EQ = re.compile(r'\bid:\s*\{\s*_eq:\s*"([^"]+)"')


class FakePrefectServer:
    def __init__(self, projects: tuple[str, ...] = ()) -> None:
        self.tenant = {"id": str(uuid.uuid4()), "slug": "default"}
        self.projects = {name: str(uuid.uuid4()) for name in projects}
        self.flows: dict[str, dict] = {}  # id -> {project_id, flow (serialized, without tasks/edges), tasks, edges}
        self.flow_runs: list[dict] = []  # the create_flow_run inputs, each with its "id"
        self.requests: list[dict] = []  # {"kind", "operation", "query", "variables"}
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakePrefectServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.requests]

    def registered_flow(self, flow_id: str) -> dict:
        """The whole serialized flow, as flow.serialize() made it before the Client split it up."""
        flow = self.flows[flow_id]
        return {**flow["flow"], "tasks": flow["tasks"], "edges": flow["edges"]}

    # --- the API --------------------------------------------------------------------

    def answer(self, query: str, variables: dict) -> dict:
        match = OPERATION.match(query)
        if not match:
            return self._error(f"cannot parse {query!r}")
        kind, operation = match.groups()
        with self._lock:
            self.requests.append(dict(kind=kind, operation=operation, query=query, variables=variables))
            handler = getattr(self, f"_{kind}_{operation}", None)
            if handler is None:
                self.unknown.append(query)
                return self._error(f"the fake server does not know {kind} {operation}")
            return handler(query, (variables or {}).get("input", {}))

    @staticmethod
    def _error(message: str) -> dict:
        return {"errors": [{"message": message}], "data": None}

    def _query_hello(self, query, _):
        return {"data": {"hello": "👋"}}

    def _query_tenant(self, query, _):
        return {"data": {"tenant": [self.tenant]}}

    def _query_project(self, query, _):
        name = json.loads(f'"{NAME_EQ.search(query).group(1)}"')
        return {"data": {"project": [{"id": self.projects[name]}] if name in self.projects else []}}

    def _mutation_create_project(self, query, input):
        if input["name"] in self.projects:
            return self._error("Uniqueness violation.")
        assert input["tenant_id"] == self.tenant["id"], input
        self.projects[input["name"]] = str(uuid.uuid4())
        return {"data": {"create_project": {"id": self.projects[input["name"]]}}}

    def _mutation_create_flow_from_compressed_string(self, query, input):
        assert input["project_id"] in self.projects.values(), input
        flow_id = str(uuid.uuid4())
        self.flows[flow_id] = dict(
            project_id=input["project_id"],
            flow=decompress(input["serialized_flow"]),
            tasks=[],
            edges=[],
            flow_group_id=str(uuid.uuid4()),
        )
        return {"data": {"create_flow_from_compressed_string": {"id": flow_id}}}

    def _mutation_register_tasks(self, query, input):
        self.flows[input["flow_id"]]["tasks"].extend(input["serialized_tasks"])
        return {"data": {"register_tasks": {"success": True}}}

    def _mutation_register_edges(self, query, input):
        self.flows[input["flow_id"]]["edges"].extend(input["serialized_edges"])
        return {"data": {"register_edges": {"success": True}}}

    def _mutation_set_schedule_active(self, query, input):
        assert input["flow_id"] in self.flows
        return {"data": {"set_schedule_active": {"success": True}}}

    def _query_flow_by_pk(self, query, _):
        flow = self.flows[ID_ARG.search(query).group(1)]
        return {"data": {"flow_by_pk": {"flow_group_id": flow["flow_group_id"]}}}

    def _mutation_create_flow_run(self, query, input):
        assert input["flow_id"] in self.flows, input
        run = {**input, "id": str(uuid.uuid4()), "states": []}
        self.flow_runs.append(run)
        self._set_state(run, Scheduled("created"))
        return {"data": {"create_flow_run": {"id": run["id"]}}}

    # --- flow of flows: create_flow_run and wait_for_flow_run (prefect.tasks.prefect) read these ---

    def set_state(self, flow_run_id: str, state: State) -> None:
        """What an agent and its flow run report: the flow run's new state."""
        with self._lock:
            self._set_state(next(r for r in self.flow_runs if r["id"] == flow_run_id), state)

    @staticmethod
    def _set_state(run: dict, state: State) -> None:
        run["states"].append(dict(timestamp=pendulum.now("utc").isoformat(), serialized_state=state.serialize()))
        run["updated"] = run["states"][-1]["timestamp"]

    def _query_flow(self, query, _):
        """FlowView's query: by flow id, or by name (the newest not archived; one version each here)."""
        by_id = ID_EQ.search(query)
        name = None if by_id else json.loads(f'"{NAME_EQ.search(query).group(1)}"')
        found = []
        for flow_id, flow in self.flows.items():
            serialized = flow["flow"]
            if (by_id and by_id.group(1) == flow_id) or (name and serialized["name"] == name):
                project = next(n for n, i in self.projects.items() if i == flow["project_id"])
                found.append(
                    dict(
                        id=flow_id,
                        settings={},
                        run_config=serialized.get("run_config"),
                        serialized_flow=serialized,
                        name=serialized["name"],
                        archived=False,
                        project={"name": project},
                        core_version=prefect.__version__,
                        storage=serialized["storage"],
                        flow_group={"labels": []},
                    )
                )
        return {"data": {"flow": found}}

    def _query_flow_run(self, query, _):
        """FlowRunView's query, by flow run id."""
        run = next((r for r in self.flow_runs if r["id"] == ID_EQ.search(query).group(1)), None)
        if run is None:
            return {"data": {"flow_run": []}}
        view = dict(
            id=run["id"],
            name=run.get("flow_run_name") or f"run-{run['id'][:8]}",
            flow_id=run["flow_id"],
            serialized_state=run["states"][-1]["serialized_state"],
            states=run["states"],
            labels=run.get("labels") or [],
            parameters=run.get("parameters") or {},
            context=run.get("context") or {},
            updated=run["updated"],
            run_config=None,
        )
        return {"data": {"flow_run": [view]}}

    def _query_agent(self, query, _):
        return {"data": {"agent": []}}

    # --- HTTP -----------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                variables = body.get("variables")
                if isinstance(variables, str):  # Prefect's Client sends them JSON-encoded
                    variables = json.loads(variables)
                reply = json.dumps(server.answer(body["query"], variables)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        return Handler
