"""Extra: a second flow that writes the batch's report from the persisted QC flow's results, measuring nothing.

For every slide in a folder: read the result extras/pipeline_prefect_persisted.py persisted
for its last QC step, and make its row from it, without opening the slide. Results go to a
new run folder: results.tsv and report.html (the pictures stay in the QC's own run folder).

    python extras/pipeline_prefect_persisted.py --data-dir data
    python extras/report_from_persisted.py --data-dir data
"""

import sys
from pathlib import Path

import prefect
from prefect import Flow, Parameter, task, unmapped
from prefect.engine.results import LocalResult
from prefect.triggers import all_finished

from BaseImage import BaseImage, SlideError
from slideqc import cli, prefect1
from slideqc.output import results, run
from slideqc.settings import DEFAULTS


@task
def read_blur_result(file_name, cache_dir) -> BaseImage:
    # The QC flow's blur step wrote its result to this target, formatted from its flow run's
    # Parameters: the slide's key (its size, modification time, the settings) and the step.
    # The same Parameters here give the same location. Reading it opens no slide.
    location = prefect1.slide_target("blur")(**{**prefect.context.parameters, "file_name": file_name})
    if not Path(location).is_file():
        raise SlideError("no persisted QC result for the slide as it is now: check it with the persisted QC flow first")
    return LocalResult(dir=cache_dir).read(location).value


@task
def slide_row(s: BaseImage, blur_max) -> results.SlideResult:
    # blur_max decides after the measurement: a report may judge the same results with another one.
    return results.result_from_slide(s, blur_max)


@task(trigger=all_finished)
def write_report(file_names, run_dir, read, row) -> list:
    rows = prefect1.rows_for(file_names, dict(read=read, row=row))
    if run_dir:
        writer = run.RunWriter(run_dir, prefect1.run_settings())
        writer.rows = rows
        writer.finish()
    return rows


with Flow("Image QC report") as flow:
    file_names = Parameter("file_names", default=[])
    cache_dir = Parameter("cache_dir", default=str(prefect1.default_cache_dir()))
    # The settings the QC measured with: read by the targets, not passed to any task.
    image_work_size = flow.add_task(Parameter("image_work_size", default=DEFAULTS.image_work_size))
    blur_work_size = flow.add_task(Parameter("blur_work_size", default=DEFAULTS.blur_work_size))
    blur_radius = flow.add_task(Parameter("blur_radius", default=DEFAULTS.blur_radius))
    blur_threshold = flow.add_task(Parameter("blur_threshold", default=DEFAULTS.blur_threshold))
    blur_max = Parameter("blur_max", default=DEFAULTS.blur_max)
    artefact_work_size = flow.add_task(Parameter("artefact_work_size", default=DEFAULTS.artefact_work_size))
    fold_max = flow.add_task(Parameter("fold_max", default=DEFAULTS.fold_max))
    run_dir = Parameter("run_dir", default=None)

    s = read_blur_result.map(file_names, unmapped(cache_dir))
    row = slide_row.map(s, unmapped(blur_max))
    rows = write_report(file_names, run_dir, read=s, row=row)

flow.set_reference_tasks([row])


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv, persisted=True)
    if args.redo:
        raise cli.UsageError("--redo: a report measures nothing; run extras/pipeline_prefect_persisted.py --redo")
    qc_run = cli.start_run(args, flow_parameters={p.name for p in flow.parameters()})
    cache = args.cache_dir or prefect1.default_cache_dir(args.output_dir)

    file_names = [str(f) for f in qc_run.file_names]
    state = flow.run(parameters=dict(file_names=file_names, cache_dir=str(cache), **qc_run.parameters))
    qc_run.add_all(prefect1.gathered_rows(state, rows, qc_run.file_names))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
