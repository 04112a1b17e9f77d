"""Exercise 1 solution: pipeline.py as a Prefect flow, one flow run per slide.

    python solutions/pipeline_prefect.py --data-dir data
    prefect run -p solutions/pipeline_prefect.py --param file_name=data/synthetic_01_blur00.svs

What changed from pipeline.py: each step is a @task that logs with Prefect's
logger; the steps are wired in a Flow whose settings are Parameters; `case`
replaces the `if`; the loop calls flow.run() once per slide. Loading retries on
I/O errors, and each step's result persists per slide, so a re-run skips the
slides it already checked (--redo to check them again).
"""

import sys
import time
from pathlib import Path

import prefect
from prefect import Flow, Parameter, case, task

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


# Runs after the rescan branch even when the branch was skipped (no rescan needed).
@task(skip_on_upstream_skip=False)
def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    own_run = not run_dir  # `prefect run` passes no run folder: make one for this slide
    run_dir = Path(run_dir or results.create_run_dir("output"))
    row = results.result_from_slide(s, blur_max, results.write_slide_images(s, run_dir))
    if own_run:
        results.write_results(run_dir, [row])
    prefect.context.get("logger").info("%s: outputs in %s", s.name, run_dir / row.outputs)
    return row


with Flow("Image QC") as flow:
    file_name = Parameter("file_name", default="data/synthetic_01_blur00.svs")
    image_work_size = Parameter("image_work_size", default="1.25x")
    blur_work_size = Parameter("blur_work_size", default="10x")
    blur_radius = Parameter("blur_radius", default=7.0)
    blur_threshold = Parameter("blur_threshold", default=0.05)
    blur_max = Parameter("blur_max", default=0.05)
    run_dir = Parameter("run_dir", default=None)
    # Read by the steps' targets, not passed to any task: add it to the flow by hand.
    cache_dir = flow.add_task(Parameter("cache_dir", default=None))

    s = load_image(file_name, image_work_size, blur_work_size)
    tissue = tissue_segmentation_simple(s)
    blurry = identify_blurry_regions(tissue, blur_radius, blur_threshold)
    rescan = is_blurry(blurry, blur_max)
    with case(rescan, True):
        warning = warn_rescan(blurry, blur_max)
    saved = save_results(blurry, blur_max, run_dir, upstream_tasks=[warning])

flow.set_reference_tasks([saved])


def main(argv=None) -> int:
    from slideqc.prefect1 import clear_cache, default_cache_dir, failure_of

    parser = cli.build_parser(__doc__.splitlines()[0])
    add_prefect_arguments(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()
    params, file_names, writer = cli.start_run(args)
    cache = Path(args.cache_dir or default_cache_dir(args.output_dir))
    if args.redo:
        clear_cache(cache, file_names, params.as_dict())

    steps = [s, tissue, blurry, rescan, saved]
    for name in file_names:
        state = flow.run(parameters=dict(file_name=str(name), run_dir=str(writer.run_dir), cache_dir=str(cache),
                                         **params.as_dict()), context={"checkpointing": True})
        step_states = [state.result.get(step) for step in steps]
        error = failure_of(name, step_states)
        writer.add(results.error_result(name, error) if error else state.result[saved].result)

    return cli.finish_run(writer, started)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
