"""The flow-of-flows extra: a parent flow starts a child QC flow run per batch and waits for each.

Against the fake Prefect server of exercises 2 and 5 (tests/fake_prefect_server.py), which answers
what create_flow_run and wait_for_flow_run (prefect.tasks.prefect) ask, and a stand-in for the
local agent: for each flow run created, a process of its own (another folder, no PYTHONPATH) loads
the registered flow from its storage, runs it with the flow run's parameters, and reports Running,
then Success or Failed, as an agent's flow run does. The parent runs no QC task itself: it holds
flow run ids, and every slide is checked in a child's process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from prefect.engine.state import Failed, Running, Success

from slideqc.output import results
from tests import test_prefect_flows
from tests.bad_slides import write_text
from tests.fake_prefect_server import FakePrefectServer
from tests.helpers import only_run_dir, per_slide, run_script
from tests.test_prefect_server import prefect_env

LESSON = "extras/pipeline_prefect_flow_of_flows.py"
reference = test_prefect_flows.reference  # the fixture: pipeline.py's results on the demo slides
CHILD = """
import json, sys
from prefect.serialization.storage import StorageSchema
spec = json.loads(sys.argv[1])
flow = StorageSchema().load(spec["storage"]).get_flow(spec["flow_name"])
sys.exit(0 if flow.run(parameters=spec["parameters"]).is_successful() else 1)
"""


class FakeAgent:
    """Runs each flow run the fake server is asked for, in a process of its own, and reports its states."""

    def __init__(self, fake: FakePrefectServer, tmp_path) -> None:
        self.fake, self.started, self.reported, self.stop = fake, {}, set(), threading.Event()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env.update(prefect_env(tmp_path, "http://127.0.0.1:9"))  # the flow run itself needs no server
        self.folder = tmp_path / "agent"
        self.folder.mkdir()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> FakeAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        for proc in self.started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _watch(self) -> None:
        while not self.stop.is_set():
            for run in list(self.fake.flow_runs):
                if run["id"] not in self.started:
                    flow = self.fake.registered_flow(run["flow_id"])
                    spec = dict(storage=flow["storage"], flow_name=flow["name"], parameters=run["parameters"])
                    self.fake.set_state(run["id"], Running("the agent started it"))
                    self.started[run["id"]] = subprocess.Popen(
                        [sys.executable, "-c", CHILD, json.dumps(spec)],
                        cwd=self.folder,
                        env=self.env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            for run_id, proc in self.started.items():
                if proc.poll() is not None and run_id not in self.reported:
                    state = Success("finished") if proc.returncode == 0 else Failed("a slide failed")
                    self.fake.set_state(run_id, state)
                    self.reported.add(run_id)
            time.sleep(0.2)


def submit(fake, tmp_path, data_dir, batch_size: int) -> subprocess.CompletedProcess:
    return run_script(
        LESSON,
        "--data-dir",
        str(data_dir),
        "--batch-size",
        str(batch_size),
        "--executor",
        "local",
        "--output-dir",
        str(tmp_path / "out"),
        env=prefect_env(tmp_path, fake.url),
        timeout=300,
    )


def test_a_child_flow_run_per_batch_and_the_parent_waits_for_each(demo_dir, demo_slides, tmp_path, reference):
    with FakePrefectServer() as fake, FakeAgent(fake, tmp_path):
        proc = submit(fake, tmp_path, demo_dir, batch_size=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert fake.unknown == []
    # One registered child flow, two flow runs of it (3 slides, 2 a batch), each with its batch only.
    [flow_id] = fake.flows
    assert fake.registered_flow(flow_id)["name"] == "Image QC parallel"
    batches = [run["parameters"]["file_names"] for run in fake.flow_runs]
    assert batches == [[str(p.resolve()) for p in demo_slides[:2]], [str(demo_slides[2].resolve())]]
    assert all(run["flow_id"] == flow_id for run in fake.flow_runs)
    # The parent waited: it read each child's state until it was finished, then the rows the children wrote.
    assert fake.operations().count("flow_run") >= 2 * len(fake.flow_runs)
    rows = results.read_results(only_run_dir(tmp_path / "out") / "results.tsv")
    assert per_slide(rows) == reference
    # No QC task ran in the parent's process: its log has the parent's tasks, no slide's step.
    log = proc.stdout + proc.stderr
    assert "Task 'create_flow_run[1]'" in log and "Task 'wait_for_flow_run[1]'" in log
    assert "load_image" not in log and "identify_blurry_regions" not in log


def test_a_failed_slide_fails_its_batch_only_and_gets_its_error_row(demo_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for slide in sorted(demo_dir.glob("*.svs"))[:2]:
        shutil.copy(slide, data / slide.name)
    write_text(data / "zz_notes.svs")  # the last batch: a file that is not a slide
    with FakePrefectServer() as fake, FakeAgent(fake, tmp_path):
        proc = submit(fake, tmp_path, data, batch_size=2)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    states = [run["states"][-1]["serialized_state"]["type"] for run in fake.flow_runs]
    assert states == ["Success", "Failed"]
    rows = {r["file_name"]: r for r in results.read_results(only_run_dir(tmp_path / "out") / "results.tsv")}
    assert rows["zz_notes.svs"]["status"] == "error" and "not a slide" in rows["zz_notes.svs"]["error"]
    assert {rows[p.name]["status"] for p in sorted(demo_dir.glob("*.svs"))[:2]} <= {"ok", "rescan"}
