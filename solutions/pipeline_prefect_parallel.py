"""Exercises 3 and 4 solution: one flow over all slides, mapped, on the executor you choose.

    python solutions/pipeline_prefect_parallel.py --data-dir data --executor threads
    python solutions/pipeline_prefect_parallel.py --executor dask --workers 2
    python solutions/pipeline_prefect_parallel.py --address tcp://127.0.0.1:8786

What changed from pipeline_prefect.py: the flow takes the list of files; every
step is `.map`ped over it with `unmapped` settings; the rescan branch is a
function applied per slide with `apply_map`; a last task gathers every slide's
row into results.tsv and report.html. The executor comes from the command line:
LocalExecutor, LocalDaskExecutor (threads or processes), or DaskExecutor on a
local cluster or an existing scheduler.
"""

import sys
import time
from pathlib import Path

import prefect
from prefect import Flow, Parameter, apply_map, case, task, unmapped
from prefect.triggers import all_finished

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # BaseImage and slideqc, wherever this runs

from BaseImage import BaseImage  # noqa: E402
from slideqc import cli, qc, results  # noqa: E402
from slideqc.prefect1 import LOAD_RETRIES, add_prefect_arguments, cache_result, slide_target  # noqa: E402


@task(target=slide_target("load"), result=cache_result(), **LOAD_RETRIES)
def load_image(file_name, image_work_size, blur_work_size) -> BaseImage:
    logger = prefect.context.get("logger")
    logger.info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


@task(target=slide_target("tissue"), result=cache_result())
def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    logger = prefect.context.get("logger")
    s = qc.segment_tissue(s)
    logger.info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.results["tissue_fraction"])
    return s


@task(target=slide_target("blur"), result=cache_result())
def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold) -> BaseImage:
    logger = prefect.context.get("logger")
    s = qc.detect_blur(s, blur_radius, blur_threshold)
    logger.info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.results["blurry_fraction"])
    return s


@task
def is_blurry(s: BaseImage, blur_max) -> bool:
    return qc.needs_rescan(s, blur_max)


@task(log_stdout=True)
def warn_rescan(s: BaseImage, blur_max):
    print(f"{s.name}: RESCAN: {100 * s.results['blurry_fraction']:.1f} % of the tissue is blurry "
          f"(more than {100 * blur_max:.1f} %)")


def check_rescan(s, blur_max):
    """The per-slide branch: apply_map builds it once for every slide."""
    rescan = is_blurry(s, blur_max)
    with case(rescan, True):
        warn_rescan(s, blur_max)
    return rescan


@task
def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    run_dir = run_dir or results.create_run_dir("output")  # `prefect run` passes no run folder
    return results.result_from_slide(s, blur_max, results.write_slide_images(s, Path(run_dir)))


# Runs whatever happened to the slides: failed slides become error rows.
@task(trigger=all_finished)
def write_results(file_names, loaded, tissue, blurry, saved, run_dir):
    from slideqc.prefect1 import row_for

    rows = [row_for(*per_slide) for per_slide in zip(file_names, loaded, tissue, blurry, saved, strict=True)]
    if run_dir:
        # The report states the settings: the flow run's parameters hold them all.
        settings = prefect.context.get("parameters", {})
        params = qc.QCParams(**{name: settings[name] for name in qc.QCParams.__dataclass_fields__ if name in settings})
        writer = results.RunWriter(Path(run_dir), params)
        writer.rows = rows
        writer.finish()
    return rows


with Flow("Image QC parallel") as flow:
    file_names = Parameter("file_names", default=[])
    image_work_size = Parameter("image_work_size", default="1.25x")
    blur_work_size = Parameter("blur_work_size", default="10x")
    blur_radius = Parameter("blur_radius", default=7.0)
    blur_threshold = Parameter("blur_threshold", default=0.05)
    blur_max = Parameter("blur_max", default=0.05)
    run_dir = Parameter("run_dir", default=None)
    # Read by the steps' targets, not passed to any task: add it to the flow by hand.
    cache_dir = flow.add_task(Parameter("cache_dir", default=None))

    s = load_image.map(file_names, unmapped(image_work_size), unmapped(blur_work_size))
    tissue = tissue_segmentation_simple.map(s)
    blurry = identify_blurry_regions.map(tissue, unmapped(blur_radius), unmapped(blur_threshold))
    rescan = apply_map(check_rescan, blurry, unmapped(blur_max))
    saved = save_results.map(blurry, unmapped(blur_max), unmapped(run_dir), upstream_tasks=[rescan])
    rows = write_results(file_names, s, tissue, blurry, saved, run_dir)

# The flow fails when a slide failed, though the results table is still written.
flow.set_reference_tasks([saved])


def main(argv=None) -> int:
    from slideqc.prefect1 import clear_cache, default_cache_dir, make_executor

    parser = cli.build_parser(__doc__.splitlines()[0], workers=True)
    add_prefect_arguments(parser, parallel=True)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()
    params, file_names, writer = cli.start_run(args)
    cache = Path(args.cache_dir or default_cache_dir(args.output_dir))
    if args.redo:
        clear_cache(cache, file_names, params.as_dict())

    executor = make_executor(args.executor, args.workers, args.address)
    state = flow.run(parameters=dict(file_names=[str(f) for f in file_names], run_dir=str(writer.run_dir),
                                     cache_dir=str(cache), **params.as_dict()),
                     executor=executor, context={"checkpointing": True})

    writer.rows = state.result[rows].result
    return cli.finish_run(writer, started)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
