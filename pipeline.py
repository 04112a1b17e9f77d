"""Slide QC in plain Python: the workshop's starting point (exercise 1 begins here).

For every slide in a folder: load it, find the tissue, measure how much of the
tissue is blurry, and warn when a slide needs a rescan. Results go to a new
run folder: results.tsv, report.html and per-slide PNGs.

    python pipeline.py --data-dir data
"""

import logging
import sys
import time

from BaseImage import BaseImage
from slideqc import cli, qc, results

logger = logging.getLogger("slideqc")


def load_image(file_name, image_work_size, blur_work_size) -> BaseImage:
    logger.info("%s: loading", file_name)
    return qc.load_slide(file_name, image_work_size, blur_work_size)


def tissue_segmentation_simple(s: BaseImage) -> BaseImage:
    s = qc.segment_tissue(s)
    logger.info("%s: tissue is %.1f %% of the slide", s.name, 100 * s.results["tissue_fraction"])
    return s


def identify_blurry_regions(s: BaseImage, blur_radius, blur_threshold) -> BaseImage:
    s = qc.detect_blur(s, blur_radius, blur_threshold)
    logger.info("%s: %.1f %% of the tissue is blurry", s.name, 100 * s.results["blurry_fraction"])
    return s


def is_blurry(s: BaseImage, blur_max) -> bool:
    return qc.needs_rescan(s, blur_max)


def warn_rescan(s: BaseImage, blur_max):
    logger.warning("%s: RESCAN: %.1f %% of the tissue is blurry (more than %.1f %%)",
                   s.name, 100 * s.results["blurry_fraction"], 100 * blur_max)


def save_results(s: BaseImage, blur_max, run_dir) -> results.SlideResult:
    outputs = results.write_slide_images(s, run_dir)
    return results.result_from_slide(s, blur_max, outputs)


def check_slide(file_name, params, run_dir) -> results.SlideResult:
    """The QC of one slide, start to end; any error becomes the slide's error row."""
    try:
        s = load_image(file_name, params.image_work_size, params.blur_work_size)
        s = tissue_segmentation_simple(s)
        s = identify_blurry_regions(s, params.blur_radius, params.blur_threshold)
        if is_blurry(s, params.blur_max):
            warn_rescan(s, params.blur_max)
        return save_results(s, params.blur_max, run_dir)
    except Exception as error:  # one bad slide never stops the batch
        message = qc.error_message(file_name, error)
        logger.error(message)
        return results.error_result(file_name, message)


def main(argv=None) -> int:
    args = cli.build_parser(__doc__.splitlines()[0]).parse_args(argv)
    cli.setup_logging(args.log_level)
    started = time.perf_counter()
    params, file_names, writer = cli.start_run(args)

    for file_name in file_names:
        writer.add(check_slide(file_name, params, writer.run_dir))

    return cli.finish_run(writer, started)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
