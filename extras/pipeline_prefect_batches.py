"""Extra: exercise 4's mapped flow, run as flow runs of --batch-size slides, one after the other.

A Prefect 1 flow run keeps every task run's state (and the executor its task
graph) until it returns: ~50 KB a slide, so a mapped flow over a whole folder
grows with the folder. Run per batch, it holds one batch (docs/benchmark.md).

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    python extras/pipeline_prefect_batches.py --data-dir data --batch-size 2
    python extras/pipeline_prefect_batches.py --data-dir data --executor processes --workers 2
"""

import contextlib
import gc
import sys

import prefect
from dask.distributed import LocalCluster
from prefect import Flow, Parameter, apply_map, case, task, unmapped
from prefect.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
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
def gather_rows(file_names, load, tissue, artefacts, blur, save) -> list:
    return prefect1.rows_for(file_names, dict(load=load, tissue=tissue, artefacts=artefacts, blur=blur, save=save))


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
    rows = gather_rows(file_names, load=s, tissue=tissue, artefacts=artefacts, blur=blurry, save=saved)

flow.set_reference_tasks([saved])


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv, parallel=True, executor=True, batches=True)
    qc_run = cli.start_run(args, flow_parameters={p.name for p in flow.parameters()})
    stack = contextlib.ExitStack()
    if args.address:
        prefect1.check_scheduler(args.address)
    elif args.executor == "dask":
        # One local cluster for every batch (DaskExecutor(cluster_kwargs=...) starts one per flow run).
        cluster = stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1))

    def new_executor():
        # A new executor for each flow run: a LocalDaskExecutor keeps every result it computed.
        if args.address:
            return DaskExecutor(address=args.address)
        if args.executor == "dask":
            # The local cluster watches its workers itself: a second watcher only makes Dask warn.
            return DaskExecutor(address=cluster.scheduler_address, watch_worker_status=False)
        if args.executor == "local":
            return LocalExecutor()
        return LocalDaskExecutor(scheduler=args.executor, num_workers=args.workers)

    with stack:
        for batch in cli.chunks(qc_run.file_names, args.batch_size):
            # One flow run per batch: the rows go to results.tsv as each ends.
            file_names = [str(f) for f in batch]
            state = flow.run(parameters=dict(file_names=file_names, **qc_run.parameters), executor=new_executor())
            qc_run.add_all(prefect1.gathered_rows(state, rows, batch))
            # Prefect's states hold reference cycles (a skipped task's exception, its traceback's frames),
            # which Python frees only in a full collection, now and then: free this batch's now.
            del state
            gc.collect()

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
