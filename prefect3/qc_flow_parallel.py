"""Prefect 3: the QC mapped over a list of slides, on threads or on Dask.

    python prefect3/qc_flow_parallel.py --data-dir data --executor threads --workers 2
    python prefect3/qc_flow_parallel.py --data-dir data --executor dask --workers 2
    python prefect3/qc_flow_parallel.py --data-dir data --address tcp://127.0.0.1:8786

What changed from the Prefect 1.x solution (solutions/pipeline_prefect_parallel.py):
`.map` returns futures at once and runs on the flow's task runner
(ThreadPoolTaskRunner, or prefect-dask's DaskTaskRunner instead of 1.x's
executors); `unmapped` is the same; the rescan branch needs no `apply_map`:
it is plain Python in the flow, per slide, once that slide's decision is known.
"""

import sys
from dataclasses import asdict

from prefect import flow, unmapped

from prefect3 import common
from prefect3.qc_flow import (
    find_artefacts,
    identify_blurry_regions,
    is_blurry,
    load_image,
    save_results,
    tissue_segmentation_simple,
    warn_rescan,
)
from slideqc import cli
from slideqc.output.cache import default_cache_dir
from slideqc.settings import DEFAULTS, QCSettings


@flow(name="Image QC (mapped)", persist_result=True)  # served: its rows are read back
def qc_slides(
    file_names: list[str],
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
) -> list[dict]:
    """The QC of every slide, each step mapped over the slides; one results row (a dict) per slide."""
    QCSettings.from_values(locals())  # the settings among the parameters: one line per bad value
    file_names = [common.local_path(name) for name in file_names]  # names that are not UTF-8: file:// URIs
    load = load_image.with_options(refresh_cache=True) if redo else load_image
    loaded = load.map(file_names, unmapped(image_work_size), unmapped(blur_work_size))
    tissue = tissue_segmentation_simple.map(loaded)
    artefacts = find_artefacts.map(tissue, unmapped(artefact_work_size), unmapped(fold_max))
    blurry = identify_blurry_regions.map(
        artefacts, unmapped(blur_radius), unmapped(blur_threshold), unmapped(tile_threads)
    )
    rescan = is_blurry.map(blurry, unmapped(blur_max))
    saved = save_results.map(blurry, unmapped(blur_max), unmapped(run_dir))

    # The rescan branch (1.x: apply_map over a function holding a `case`): plain Python.
    warnings = []
    for slide, decision in zip(blurry, rescan, strict=True):
        decision.wait()
        if decision.state.is_completed() and decision.result():
            warnings.append(warn_rescan.submit(slide, blur_max))
    for warning in warnings:
        warning.wait()

    # One row per slide, whatever happened to it: a failed slide never fails the others.
    steps = dict(load=loaded, tissue=tissue, artefacts=artefacts, blur=blurry, save=saved)
    return [
        asdict(common.row_from_futures(name, {step: futures[i] for step, futures in steps.items()}))
        for i, name in enumerate(file_names)
    ]


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__.splitlines()[0], parallel=True)
    common.add_prefect_arguments(parser, parallel=True)
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    common.local_run_defaults()
    runner = common.make_task_runner(args.executor, args.workers, args.address)
    qc_run = cli.start_run(args, flow_parameters=qc_slides.parameters.properties)

    with common.flow_runs(args.cache_dir or default_cache_dir(args.output_dir)):
        file_names = [common.path_parameter(name) for name in qc_run.file_names]
        qc = qc_slides.with_options(task_runner=runner)
        state = qc(file_names=file_names, redo=args.redo, **qc_run.parameters, return_state=True)
    qc_run.add_all(common.rows_from_batch_state(qc_run.file_names, state))

    return qc_run.finish()


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
