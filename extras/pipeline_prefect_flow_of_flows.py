"""Extra: exercise 5's mapped flow as child flow runs of --batch-size slides, started and waited for by a parent flow.

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    prefect backend server && prefect server start        # once, in another terminal
    prefect agent local start                             # in a third: it runs the flow run
    python extras/pipeline_prefect_flow_of_flows.py --data-dir data --batch-size 2
"""

import sys

import prefect
from prefect import Client, Flow, Parameter, apply_map, case, task, unmapped
from prefect.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from prefect.tasks.prefect import create_flow_run, wait_for_flow_run
from prefect.triggers import all_finished

from BaseImage import BaseImage
from slideqc import cli, prefect1, qc
from slideqc.output import results, run
from slideqc.settings import DEFAULTS


@task
def load_image(file_name, image_work_size, blur_work_size) -> BaseImage:
    logger = prefect.context.get("logger")
    logger.info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


@task
def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    logger = prefect.context.get("logger")
    s = qc.segment_tissue(s)
    logger.info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.found[qc.Tissue].fraction)
    return s


@task
def find_artefacts(s: BaseImage, artefact_work_size, fold_max) -> BaseImage:
    logger = prefect.context.get("logger")
    s = qc.find_artefacts(s, artefact_work_size, fold_max)
    logger.info("%s", qc.describe_artefacts(s))
    return s


@task
def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold, tile_threads) -> BaseImage:
    logger = prefect.context.get("logger")
    s = qc.detect_blur(s, blur_radius, blur_threshold, tile_threads)
    logger.info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.found[qc.Blur].fraction)
    return s


@task
def is_blurry(s: BaseImage, blur_max) -> bool:
    return qc.needs_rescan(s, blur_max)


@task
def warn_rescan(s: BaseImage, blur_max):
    logger = prefect.context.get("logger")
    logger.warning(
        "%s: RESCAN: %.1f %% of the tissue is blurry (more than %.1f %%)",
        s.name,
        100 * s.found[qc.Blur].fraction,
        100 * blur_max,
    )


def check_rescan(s, blur_max):
    rescan = is_blurry(s, blur_max)
    with case(rescan, True):
        warn_rescan(s, blur_max)
    return rescan


@task
def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    return run.save_slide(s, blur_max, run_dir)


@task(trigger=all_finished)
def write_results(file_names, run_dir, load, tissue, artefacts, blur, save) -> list:
    rows = prefect1.rows_for(file_names, dict(load=load, tissue=tissue, artefacts=artefacts, blur=blur, save=save))
    for row in rows if run_dir else []:
        # One flow run per batch: each adds its rows to the run's files (the server rows extra's way).
        prefect1.save_row(row, run_dir, prefect1.run_settings())
    return rows


with Flow("Image QC parallel") as flow:
    file_names = Parameter("file_names", default=[])
    image_work_size = Parameter("image_work_size", default=DEFAULTS.image_work_size)
    blur_work_size = Parameter("blur_work_size", default=DEFAULTS.blur_work_size)
    blur_radius = Parameter("blur_radius", default=DEFAULTS.blur_radius)
    blur_threshold = Parameter("blur_threshold", default=DEFAULTS.blur_threshold)
    blur_max = Parameter("blur_max", default=DEFAULTS.blur_max)
    artefact_work_size = Parameter("artefact_work_size", default=DEFAULTS.artefact_work_size)
    fold_max = Parameter("fold_max", default=DEFAULTS.fold_max)
    run_dir = Parameter("run_dir", default=None)
    tile_threads = Parameter("tile_threads", default=None)

    s = load_image.map(file_names, unmapped(image_work_size), unmapped(blur_work_size))
    tissue = tissue_segmentation_simple.map(s)
    artefacts = find_artefacts.map(tissue, unmapped(artefact_work_size), unmapped(fold_max))
    blurry = identify_blurry_regions.map(
        artefacts, unmapped(blur_radius), unmapped(blur_threshold), unmapped(tile_threads)
    )
    rescan = apply_map(check_rescan, blurry, unmapped(blur_max))
    saved = save_results.map(blurry, unmapped(blur_max), unmapped(run_dir), upstream_tasks=[rescan])
    rows = write_results(file_names, run_dir, load=s, tissue=tissue, artefacts=artefacts, blur=blurry, save=saved)

flow.set_reference_tasks([saved])

with Flow("Image QC in batches") as parent:
    batches = Parameter("batches", default=[])  # each batch's parameters: its file names, the settings
    child_runs = create_flow_run.map(
        flow_name=unmapped("Image QC parallel"), project_name=unmapped("Image QC"), parameters=batches
    )
    # The parent holds each child's flow run id and final view, never a slide.
    finished = wait_for_flow_run.map(child_runs, raise_final_state=unmapped(True))


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv, parallel=True, executor=True, batches=True)
    parameters = {p.name for p in flow.parameters()}
    cli.check_usage(args, flow_parameters=parameters)
    prefect1.check_server()
    qc_run = cli.start_run(args, flow_parameters=parameters)

    if args.address:
        prefect1.check_scheduler(args.address)
        executor = DaskExecutor(address=args.address)
    elif args.executor == "dask":
        # The local cluster watches its workers itself: a second watcher only makes Dask warn.
        executor = DaskExecutor(
            cluster_kwargs=dict(n_workers=args.workers, threads_per_worker=1), watch_worker_status=False
        )
    elif args.executor == "local":
        executor = LocalExecutor()
    else:
        executor = LocalDaskExecutor(scheduler=args.executor, num_workers=args.workers)
    flow.executor = executor
    client = Client()
    client.create_project(project_name="Image QC")
    flow_id = flow.register(project_name="Image QC")
    print(f"flow {flow_id}: a flow run per batch of {args.batch_size} slide(s) on {type(executor).__name__}")
    batches = [
        dict(file_names=[str(f.resolve()) for f in batch], **qc_run.parameters)
        for batch in cli.chunks(qc_run.file_names, args.batch_size)
    ]
    parent.run(parameters=dict(batches=batches))
    # The child runs wrote each slide's row in the run folder; a slide without one gets its error row.
    qc_run.add_all(prefect1.saved_rows(qc_run.folder, qc_run.file_names))
    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(prefect1.run_main(main))
