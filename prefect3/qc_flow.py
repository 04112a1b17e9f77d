"""Prefect 3: pipeline.py as a flow, one flow run per slide.

    python prefect3/qc_flow.py --data-dir data

What changed from the Prefect 1.x solution (solutions/pipeline_prefect.py): the
flow is a decorated function, `@flow`, and its Parameters are the function's
typed arguments; the rescan branch is a plain `if`; tasks are called like
functions and return their values. Loading retries on I/O errors and is cached
on the slide file and the work sizes (--redo loads again). The same flow is
served as a deployment by prefect3/serve.py.
"""

import sys
from dataclasses import asdict

from prefect import flow, get_run_logger, task

from BaseImage import BaseImage
from prefect3 import common
from slideqc import cli, qc
from slideqc.output import results, run
from slideqc.output.cache import default_cache_dir
from slideqc.settings import DEFAULTS, QCSettings


@task(cache_key_fn=common.slide_cache_key, retry_condition_fn=common.retry_on_os_error, **common.LOAD_RETRIES)
def load_image(file_name: str, image_work_size: str, blur_work_size: str) -> BaseImage:
    get_run_logger().info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


@task
def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    s = qc.segment_tissue(s)
    get_run_logger().info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.found[qc.Tissue].fraction)
    return s


@task
def find_artefacts(s: BaseImage, artefact_work_size: str, fold_max: float) -> BaseImage:
    s = qc.find_artefacts(s, artefact_work_size, fold_max)
    get_run_logger().info("%s", qc.describe_artefacts(s))
    return s


@task
def identify_blurry_regions(
    s: BaseImage, blur_radius: float, blur_threshold: float, tile_threads: int | None = None
) -> BaseImage:
    s = qc.detect_blur(s, blur_radius, blur_threshold, tile_threads)
    get_run_logger().info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.found[qc.Blur].fraction)
    return s


@task
def is_blurry(s: BaseImage, blur_max: float) -> bool:
    return qc.needs_rescan(s, blur_max)


@task
def warn_rescan(s: BaseImage, blur_max: float) -> None:
    get_run_logger().warning(
        "%s: RESCAN: %.1f %% of the tissue is blurry (more than %.1f %%)",
        s.name,
        100 * s.found[qc.Blur].fraction,
        100 * blur_max,
    )


@task
def save_results(s: BaseImage, blur_max: float, run_dir: str | None) -> results.SlideResult:
    row = run.save_slide(s, blur_max, run_dir)  # a run from the UI passes no run folder: it gets its own
    get_run_logger().info("%s: outputs in %s", s.name, row.outputs)
    return row


@flow(name="Image QC", flow_run_name=common.slide_run_name, persist_result=True)
def qc_slide(
    file_name: str,
    image_work_size: str = DEFAULTS.image_work_size,
    blur_work_size: str = DEFAULTS.blur_work_size,
    blur_radius: float = DEFAULTS.blur_radius,
    blur_threshold: float = DEFAULTS.blur_threshold,
    blur_max: float = DEFAULTS.blur_max,
    artefact_work_size: str = DEFAULTS.artefact_work_size,
    fold_max: float = DEFAULTS.fold_max,
    run_dir: str | None = None,
    redo: bool = False,
    tile_threads: int | None = None,
) -> dict:
    """The QC of one slide; returns its results.tsv row as a dict. A slide that fails fails the run."""
    QCSettings.from_values(locals())  # the settings among the parameters: one line per bad value
    file_name = common.local_path(file_name)  # a name that is not UTF-8 arrives as a file:// URI
    load = load_image.with_options(refresh_cache=True) if redo else load_image
    s = load(file_name, image_work_size, blur_work_size)
    s = tissue_segmentation_simple(s)
    s = find_artefacts(s, artefact_work_size, fold_max)
    s = identify_blurry_regions(s, blur_radius, blur_threshold, tile_threads)
    if is_blurry(s, blur_max):
        warn_rescan(s, blur_max)
    return asdict(save_results(s, blur_max, run_dir))


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0])
    common.add_prefect_arguments(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    common.local_run_defaults()
    qc_run = cli.start_run(args, flow_parameters=qc_slide.parameters.properties)

    with common.flow_runs(args.cache_dir or default_cache_dir(args.output_dir)):
        for name in qc_run.file_names:
            file_name = common.path_parameter(name)
            state = qc_slide(file_name=file_name, redo=args.redo, **qc_run.parameters, return_state=True)
            qc_run.add(common.row_from_state(name, state))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
