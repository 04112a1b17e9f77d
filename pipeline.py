"""Slide QC in plain Python: the workshop's starting point (exercise 1 begins here).

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    python pipeline.py --data-dir data
"""

import logging
import sys

from BaseImage import BaseImage
from slideqc import cli, qc
from slideqc.output import results, run
from slideqc.settings import QCSettings

logger = logging.getLogger("slideqc")


def load_image(file_name, image_work_size, blur_work_size) -> BaseImage:
    logger.info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    s = qc.segment_tissue(s)
    logger.info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.found[qc.Tissue].fraction)
    return s


def find_artefacts(s: BaseImage, artefact_work_size, fold_max) -> BaseImage:
    s = qc.find_artefacts(s, artefact_work_size, fold_max)
    logger.info("%s", qc.describe_artefacts(s))
    return s


def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold, tile_threads) -> BaseImage:
    s = qc.detect_blur(s, blur_radius, blur_threshold, tile_threads)
    logger.info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.found[qc.Blur].fraction)
    return s


def is_blurry(s: BaseImage, blur_max) -> bool:
    return qc.needs_rescan(s, blur_max)


def warn_rescan(s: BaseImage, blur_max):
    logger.warning(
        "%s: RESCAN: %.1f %% of the tissue is blurry (more than %.1f %%)",
        s.name,
        100 * s.found[qc.Blur].fraction,
        100 * blur_max,
    )


def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    return run.save_slide(s, blur_max, run_dir)


def check_slide(file_name, settings: QCSettings, run_dir, tile_threads) -> results.SlideResult:
    """The QC of one slide, start to end; any error becomes the slide's error row."""
    try:
        s = load_image(file_name, settings.image_work_size, settings.blur_work_size)
        s = tissue_segmentation_simple(s)
        s = find_artefacts(s, settings.artefact_work_size, settings.fold_max)
        s = identify_blurry_regions(s, settings.blur_radius, settings.blur_threshold, tile_threads)
        if is_blurry(s, settings.blur_max):
            warn_rescan(s, settings.blur_max)
        return save_results(s, settings.blur_max, run_dir)
    except Exception as error:  # one bad slide never stops the batch: it gets its error row
        row = results.error_row(file_name, error)
        logger.error(row.error)
        return row


def main(argv=None) -> int:
    args = cli.parse_args(__doc__, argv)
    qc_run = cli.start_run(args)

    for file_name in qc_run.file_names:
        qc_run.add(check_slide(file_name, qc_run.settings, qc_run.folder, qc_run.tile_threads))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
