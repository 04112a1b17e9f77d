"""Logging for every script: the QC's own lines, and one line per bad slide from Prefect and Dask."""

from __future__ import annotations

import logging
import os
import sys

from BaseImage import display_name
from slideqc import qc


class OneLineSlideErrors(logging.Filter):
    """A handler filter: a slide's known error is logged as one line, not with its traceback.

    Prefect logs every failed task with ``exc_info``; for a bad slide (a
    SlideError, an OpenSlide or OS error: qc.SLIDE_ERRORS) the traceback says
    nothing a lab can use, so the record keeps its message, with the error's one
    line added when the message lacks it, and loses the traceback. Any other
    exception (a bug) keeps its traceback. Names that are not UTF-8 are shown
    with display_name. The task's state still holds the exception: only the log changes.
    """

    # Prefect 3 says again, for every later step and for the flow run, that a slide's step failed:
    # the first line said it (the states in the UI still show every step).
    ECHOES = (
        "Finished in state NotReady(",
        "Encountered exception during execution: ",
        "Finished in state Failed('Flow run encountered an exception: ",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a record to drop (an echo); shorten a bad slide's record to one line in place."""
        error = record.exc_info[1] if record.exc_info else None
        said = record.getMessage()
        if (
            self.ECHOES[0] in said
            or self.ECHOES[2] in said
            or (said.startswith(self.ECHOES[1]) and isinstance(error, qc.SLIDE_ERRORS))
        ):
            return False
        if isinstance(error, qc.SLIDE_ERRORS):
            message = record.getMessage()
            text = " ".join(str(error).split())
            if text not in message:
                head, _, _ = message.partition("Exception encountered during task execution!")
                message = f"{head.rstrip()} {type(error).__name__}: {text}".strip()
            record.msg, record.args = message, None
            record.exc_info, record.exc_text = None, None
        if record.args or not isinstance(record.msg, str) or _has_surrogates(record.msg):
            record.msg, record.args = display_name(record.getMessage()), None
        return True


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def quiet_slide_tracebacks(logger_prefix: str = "prefect") -> None:
    """Put OneLineSlideErrors on every handler of the loggers named ``logger_prefix``... ("": the root's; idempotent)."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if logger_prefix and (name == logger_prefix or name.startswith(logger_prefix + "."))
    ]
    for logger in [logging.getLogger(logger_prefix), *loggers]:
        for handler in logger.handlers:
            if not any(isinstance(f, OneLineSlideErrors) for f in handler.filters):
                handler.addFilter(OneLineSlideErrors())


def setup_logging(level: str = "INFO") -> None:
    """Log the QC's messages to stderr; Prefect's loggers keep their handlers, with one line per bad slide."""
    logger = logging.getLogger("slideqc")
    logger.setLevel(getattr(logging, level))
    logger.propagate = False  # under Prefect the root logger may print too: say it once
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    # Prefect 3 makes its handlers at its first flow run: have them made now, to filter them.
    prefect_logging = sys.modules.get("prefect.logging.configuration")
    if prefect_logging is not None and hasattr(prefect_logging, "ensure_logging_setup"):
        prefect_logging.ensure_logging_setup()
    quiet_slide_tracebacks("slideqc")
    quiet_slide_tracebacks("prefect")
    quiet_slide_tracebacks("")  # the root logger: Prefect 3's console handler is there
    # Dask workers this process starts (a local cluster) log in their own processes: they load
    # this module first (dask_setup below) and say a bad slide in one line too.
    os.environ.setdefault("DASK_DISTRIBUTED__WORKER__PRELOAD", __name__)
    if "dask" in sys.modules:  # imported already: its configuration has read the environment
        import dask.config

        if not dask.config.get("distributed.worker.preload", None):
            dask.config.set({"distributed.worker.preload": [__name__]})


def dask_setup(worker=None) -> None:
    """Dask's preload hook (distributed.worker.preload): a worker's Prefect logs get OneLineSlideErrors."""
    import prefect  # noqa: F401  (Prefect makes its handlers on import: filter them once they exist)

    quiet_slide_tracebacks("prefect")
