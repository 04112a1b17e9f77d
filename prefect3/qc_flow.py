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
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # BaseImage, slideqc and prefect3, wherever this runs

from prefect import flow, get_run_logger, task  # noqa: E402

from BaseImage import BaseImage  # noqa: E402
from prefect3 import common  # noqa: E402
from slideqc import cli, qc, results  # noqa: E402
from slideqc.qc import QCParams  # noqa: E402


@task(cache_key_fn=common.slide_cache_key, retry_condition_fn=common.retry_on_os_error, **common.LOAD_RETRIES)
def load_image(file_name: str, image_work_size: str, blur_work_size: str) -> BaseImage:
    get_run_logger().info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


@task
def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    s = qc.segment_tissue(s)
    get_run_logger().info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.results["tissue_fraction"])
    return s


@task
def identify_blurry_regions(s: BaseImage, blur_radius: float, blur_threshold: float) -> BaseImage:
    s = qc.detect_blur(s, blur_radius, blur_threshold)
    get_run_logger().info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.results["blurry_fraction"])
    return s


@task
def is_blurry(s: BaseImage, blur_max: float) -> bool:
    return qc.needs_rescan(s, blur_max)


@task
def warn_rescan(s: BaseImage, blur_max: float) -> None:
    get_run_logger().warning("%s: RESCAN: %.1f %% of the tissue is blurry (more than %.1f %%)",
                             s.name, 100 * s.results["blurry_fraction"], 100 * blur_max)


@task
def save_results(s: BaseImage, blur_max: float, run_dir: str | None) -> results.SlideResult:
    folder, own_run = common.own_run_dir(run_dir)  # a run from the UI passes no run folder: make one
    row = results.result_from_slide(s, blur_max, results.write_slide_images(s, folder))
    if own_run:
        results.write_results(folder, [row])
    get_run_logger().info("%s: outputs in %s", s.name, folder / row.outputs)
    return row


@flow(name="Image QC", flow_run_name=common.slide_run_name, persist_result=True)
def qc_slide(file_name: str, image_work_size: str = "1.25x", blur_work_size: str = "10x", blur_radius: float = 7.0,
             blur_threshold: float = 0.05, blur_max: float = 0.05, run_dir: str | None = None,
             redo: bool = False) -> dict:
    """The QC of one slide; returns its results.tsv row as a dict. A slide that fails fails the run."""
    QCParams(image_work_size, blur_work_size, blur_radius, blur_threshold, blur_max)  # one line per bad value
    load = load_image.with_options(refresh_cache=True) if redo else load_image
    s = load(file_name, image_work_size, blur_work_size)
    s = tissue_segmentation_simple(s)
    s = identify_blurry_regions(s, blur_radius, blur_threshold)
    if is_blurry(s, blur_max):
        warn_rescan(s, blur_max)
    return asdict(save_results(s, blur_max, run_dir))


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0])
    common.add_prefect_arguments(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()
    params, file_names, writer = cli.start_run(args)

    for name in file_names:
        state = qc_slide(file_name=str(name), run_dir=str(writer.run_dir), redo=args.redo, **params.as_dict(),
                         return_state=True)
        writer.add(common.row_from_state(name, state))

    return cli.finish_run(writer, started)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
