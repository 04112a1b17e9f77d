"""Extra: exercise 1's flow, whose blur step prints its finding and Prefect logs the print (log_stdout).

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    python extras/pipeline_prefect_log_stdout.py --data-dir data
"""

import sys

import prefect
from prefect import Flow, Parameter, case, task

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


# Code that prints (a script you brought in, a library): log_stdout=True sends its prints to Prefect's log.
@task(log_stdout=True)
def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold, tile_threads) -> BaseImage:
    s = qc.detect_blur(s, blur_radius, blur_threshold, tile_threads)
    print(f"{s.name}: {100 * s.found[qc.Blur].fraction:.1f} % of the tissue is blurry")
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


@task(skip_on_upstream_skip=False)
def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    return run.save_slide(s, blur_max, run_dir)


with Flow("Image QC") as flow:
    file_name = Parameter("file_name", default="data/synthetic_01_blur00.svs")
    image_work_size = Parameter("image_work_size", default=DEFAULTS.image_work_size)
    blur_work_size = Parameter("blur_work_size", default=DEFAULTS.blur_work_size)
    blur_radius = Parameter("blur_radius", default=DEFAULTS.blur_radius)
    blur_threshold = Parameter("blur_threshold", default=DEFAULTS.blur_threshold)
    blur_max = Parameter("blur_max", default=DEFAULTS.blur_max)
    artefact_work_size = Parameter("artefact_work_size", default=DEFAULTS.artefact_work_size)
    fold_max = Parameter("fold_max", default=DEFAULTS.fold_max)
    run_dir = Parameter("run_dir", default=None)
    tile_threads = Parameter("tile_threads", default=None)

    s = load_image(file_name, image_work_size, blur_work_size)
    tissue = tissue_segmentation_simple(s)
    artefacts = find_artefacts(tissue, artefact_work_size, fold_max)
    blurry = identify_blurry_regions(artefacts, blur_radius, blur_threshold, tile_threads)
    rescan = is_blurry(blurry, blur_max)
    with case(rescan, True):
        warning = warn_rescan(blurry, blur_max)
    saved = save_results(blurry, blur_max, run_dir, upstream_tasks=[warning])


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv)
    qc_run = cli.start_run(args, flow_parameters={p.name for p in flow.parameters()})

    for file_name in qc_run.file_names:
        state = flow.run(parameters=dict(file_name=str(file_name), **qc_run.parameters))
        qc_run.add(prefect1.slide_row(file_name, state))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
