"""The command-line vocabulary every script shares: one set of options, checked once.

Every QC setting of :class:`~slideqc.settings.QCSettings` is an option (``blur_max`` is
``--blur-max``); the scripts add the options of their kind (--workers, --executor,
--redo, --batch-size). What the command line gives is checked before anything is
written (:func:`check_usage`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Literal, TypeVar, get_args

from BaseImage import SettingError, display_name
from slideqc.cli.errors import EPILOG, UsageError
from slideqc.cli.logs import setup_logging
from slideqc.settings import BATCH_SIZE, QCSettings

Executor = Literal["local", "threads", "processes", "dask"]
EXECUTORS: tuple[Executor, ...] = get_args(Executor)
GIVEN = "given_settings"  # the Namespace attribute: the settings the command line gave (not defaults)

log = logging.getLogger("slideqc")
Item = TypeVar("Item")


class SettingOption(argparse.Action):
    """Store a QC setting's value, and note that the command line gave it (:data:`GIVEN`).

    A lesson's flow that declares no Parameter for a setting refuses that setting when it
    is given (:func:`check_usage`), rather than silently running with the default.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        """Store ``values`` as the setting's value and add the setting to the ones given."""
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, frozenset(getattr(namespace, GIVEN, frozenset())) | {self.dest})


def build_parser(description: str, parallel: bool = False, slides: bool = True) -> argparse.ArgumentParser:
    """Return the shared options; ``parallel`` adds --workers (and --executor/--address for the mapped flows).

    ``slides=False`` leaves out --data-dir and --files, for a script that finds its slides elsewhere.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EPILOG
    )
    data = parser.add_argument_group("slides")
    if slides:
        data.add_argument("--data-dir", default="data", help="folder with the slides")
    data.add_argument("--file-type", default="svs", help="slide file extension to look for")
    if slides:
        data.add_argument(
            "--files", nargs="+", metavar="SLIDE", help="check these slides instead of every slide in --data-dir"
        )
    qc = parser.add_argument_group("QC settings")
    for setting in fields(QCSettings):
        qc.add_argument(
            option_name(setting.name),
            type=type(setting.default),
            default=setting.default,
            action=SettingOption,
            help=setting.metadata["help"],
        )
    parser.set_defaults(**{GIVEN: frozenset(), "script": parser.prog})
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default="output", help="each run makes a new folder in here")
    out.add_argument("--run-name", help="name of the run folder (default: run-<date>-<time>)")
    out.add_argument("--overwrite", action="store_true", help="reuse an existing --run-name folder")
    out.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--tile-threads", type=int, help="threads that measure one slide's tiles (default: CPUs // --workers)"
    )
    if parallel:
        speed.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="slides checked side by side")
    return parser


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mapped flows' choice of executor (exercise 4); the Prefect 3 edition takes the same options."""
    group = parser.add_argument_group("Prefect executor")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="threads",
        help="local: one task at a time (LocalExecutor); threads / processes: a pool of --workers "
        "(LocalDaskExecutor; Prefect 3: ThreadPoolTaskRunner / ProcessPoolTaskRunner); "
        "dask: a local Dask cluster of --workers processes (DaskExecutor; DaskTaskRunner)",
    )
    group.add_argument(
        "--address",
        help="run on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
        "(DaskExecutor(address=...); Prefect 3: DaskTaskRunner(address=...))",
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Dask cluster option of a flow whose blur task sends its tiles there (extras/pipeline_prefect_dask_tiles.py)."""
    group = parser.add_argument_group("Dask cluster")
    group.add_argument(
        "--address",
        help="send each slide's blur tiles to this existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
        "(default: a local cluster of --workers processes, started and closed by the flow)",
    )


def add_persisted_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the flows whose steps persist their results (extras/pipeline_prefect_persisted.py)."""
    group = parser.add_argument_group("persisted results")
    group.add_argument("--redo", action="store_true", help="check slides again even when persisted results exist")
    group.add_argument("--cache-dir", help="where results persist between runs (default: <output-dir>/.qc-cache)")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the batch size of a script that checks its slides as several flow runs (extras/pipeline_prefect_batches.py)."""
    group = parser.add_argument_group("batches")
    group.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help="slides per flow run: the slides are checked as flow runs of this many, one after "
        "the other, so a run holds one batch's task states, not every slide's",
    )


def add_notify_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the webhook option of a script that posts its verdicts to a chat (extras/pipeline_prefect_notify.py)."""
    group = parser.add_argument_group("notifications")
    group.add_argument(
        "--webhook",
        metavar="URL",
        help="post a message per slide that needs a rescan, a re-cut, failed or cannot be judged, and a "
        'summary of the run, to this incoming-webhook URL (Slack\'s JSON: {"text": ...})',
    )


def chunks(items: Sequence[Item], size: int) -> list[list[Item]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def parse_args(
    doc: str,
    argv: list[str] | None = None,
    parallel: bool = False,
    executor: bool = False,
    persisted: bool = False,
    batches: bool = False,
    notify: bool = False,
    cluster: bool = False,
) -> argparse.Namespace:
    """Parse a script's command line (its description: the first line of ``doc``) and set up logging."""
    parser = build_parser(doc.strip().splitlines()[0], parallel=parallel)
    if executor:
        add_executor_arguments(parser)
    if persisted:
        add_persisted_arguments(parser)
    if batches:
        add_batch_arguments(parser)
    if notify:
        add_notify_arguments(parser)
    if cluster:
        add_cluster_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args


def option_name(setting: str) -> str:
    """Return the command-line option of a setting: ``blur_max`` is ``--blur-max``."""
    return "--" + setting.replace("_", "-")


def settings_from_args(args: argparse.Namespace) -> QCSettings:
    """Return the QC settings the command line gives (the defaults for the rest); a UsageError names a bad option."""
    try:
        return QCSettings(**{name: getattr(args, name) for name in QCSettings.names()})
    except SettingError as error:
        raise UsageError(f"{option_name(error.setting)}: {error.reason}") from None


def tile_threads(args: argparse.Namespace) -> int:
    """--tile-threads, or each of the --workers slides' share of the cores (at least 1)."""
    if args.tile_threads is not None:
        if args.tile_threads < 1:
            raise UsageError(f"--tile-threads: must be >= 1, got {args.tile_threads}")
        return args.tile_threads
    if getattr(args, "address", None):
        return 1  # the cluster's workers run one slide per thread: no tile threads on top
    return max(1, (os.cpu_count() or 1) // max(1, getattr(args, "workers", 1)))


def slide_paths(args: argparse.Namespace) -> list[Path]:
    """Return the slides to check: --files, or every *.<file-type> in --data-dir, sorted."""
    if args.files:
        return [Path(f) for f in args.files]
    folder = Path(args.data_dir)
    if not folder.is_dir():
        raise UsageError(f"--data-dir: {folder} is not a folder (make slides with: python get_data.py --synthetic 3)")
    suffix = "." + args.file_type.lstrip(".").lower()
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
    except OSError as error:
        raise UsageError(
            f"--data-dir: cannot read {folder}: {error.strerror}; check its permissions "
            "(the user running this needs to read and list it)"
        ) from None
    # Hidden files (a name starting with '.': '..svs', macOS's '._slide.svs' copies) are not slides
    # to check: said in one line, so none is skipped without a word.
    hidden = [p for p in found if p.name.startswith(".")]
    if hidden:
        log.warning(
            "skipping %d hidden file(s) in %s (names starting with '.'; rename them to check them): %s",
            len(hidden),
            folder,
            ", ".join(display_name(p.name) for p in hidden),
        )
    paths = [p for p in found if not p.name.startswith(".")]
    if not paths:
        raise UsageError(f"--data-dir: no *{suffix} slides in {folder}")
    return paths


def refuse_undeclared(args: argparse.Namespace, flow_parameters: Collection[str]) -> None:
    """Raise a UsageError for the first setting the command line gives that the flow has no Parameter for."""
    for name in sorted(set(getattr(args, GIVEN, ())) - set(flow_parameters)):
        raise UsageError(
            f"{option_name(name)}: the flow of {getattr(args, 'script', 'this script')} has no Parameter "
            f"{name!r}, so this setting cannot reach it; add the Parameter to the flow, or leave the option out"
        )


def check_usage(
    args: argparse.Namespace, flow_parameters: Collection[str] | None = None
) -> tuple[QCSettings, list[Path], int]:
    """Everything about the command line that can be wrong, checked before anything is written.

    ``flow_parameters``: the Parameters of the lesson's flow, when it has one; a setting
    given on the command line that the flow does not declare is refused (its name and
    the lesson's in one line), as the flow could not take it.
    """
    settings = settings_from_args(args)
    if flow_parameters is not None:
        refuse_undeclared(args, flow_parameters)
    for option in ("workers", "batch_size", "limit"):  # counts, where the script has them
        if getattr(args, option, 1) < 1:
            raise UsageError(f"{option_name(option)}: must be >= 1, got {getattr(args, option)}")
    threads = tile_threads(args)
    return settings, slide_paths(args), threads
