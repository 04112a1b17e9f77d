"""Extra: exercise 4's mapped flow on the LocalExecutor, its blur task sending each slide's tiles to a Dask cluster.

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    python extras/pipeline_prefect_dask_tiles.py --data-dir data --workers 2
    python extras/pipeline_prefect_dask_tiles.py --data-dir data --address tcp://127.0.0.1:8786
"""

import sys

import prefect
from dask.distributed import Client, LocalCluster
from prefect import Flow, Parameter, apply_map, case, resource_manager, task, unmapped
from prefect.executors import LocalExecutor
from prefect.triggers import all_finished

from BaseImage import BaseImage
from slideqc import cli, prefect1, qc, tiled
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


@resource_manager
class DaskCluster:
    """The Dask cluster the blur task sends its tiles to: the one at ``address``, or a local one, closed at the end."""

    def __init__(self, address=None, n_workers=2):
        self.address, self.n_workers, self.cluster = address, n_workers, None

    def setup(self) -> Client:
        if not self.address:
            self.cluster = LocalCluster(
                host="127.0.0.1", n_workers=self.n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        return Client(self.address or self.cluster)

    def cleanup(self, client: Client):
        client.close()
        if self.cluster is not None:
            self.cluster.close()


@task
def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold, tile_threads, client) -> BaseImage:
    logger = prefect.context.get("logger")
    with tiled.tiles_on(client):  # the slide's tiles are measured on the cluster's workers
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
    if run_dir:
        writer = run.RunWriter(run_dir, prefect1.run_settings())
        writer.rows = rows
        writer.finish()
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
    with DaskCluster(Parameter("address", default=None), Parameter("workers", default=2)) as client:
        blurry = identify_blurry_regions.map(
            artefacts, unmapped(blur_radius), unmapped(blur_threshold), unmapped(tile_threads), unmapped(client)
        )
    rescan = apply_map(check_rescan, blurry, unmapped(blur_max))
    saved = save_results.map(blurry, unmapped(blur_max), unmapped(run_dir), upstream_tasks=[rescan])
    rows = write_results(file_names, run_dir, load=s, tissue=tissue, artefacts=artefacts, blur=blurry, save=saved)

flow.set_reference_tasks([saved])


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv, parallel=True, cluster=True)
    qc_run = cli.start_run(args, flow_parameters={p.name for p in flow.parameters()})

    if args.address:
        prefect1.check_scheduler(args.address)
    # One task at a time here: the heavy work, the blur's tiles, goes to the cluster.
    executor = LocalExecutor()
    file_names = [str(f) for f in qc_run.file_names]
    parameters = dict(file_names=file_names, address=args.address, workers=args.workers, **qc_run.parameters)
    state = flow.run(parameters=parameters, executor=executor)
    qc_run.add_all(prefect1.gathered_rows(state, rows, qc_run.file_names))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
