"""The progress of a run: a bar on a terminal, a plain line per slide elsewhere."""

from __future__ import annotations

import logging
import sys
import time

from slideqc.output.results import SlideResult

log = logging.getLogger("slideqc")


class Progress:
    """Slides done, failed, rescans and time left: a tqdm bar on a terminal, else a plain log line per update."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.counts = {"failed": 0, "rescan": 0, "re-cut": 0, "cannot judge": 0}
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="slide", desc="QC", file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, rows: list[SlideResult]) -> None:
        """Count the slides of ``rows`` as done (failed, rescan or cannot judge too) and show the progress."""
        for row in rows:
            key = "failed" if row.failed else "cannot judge" if row.unjudged else None
            key = key or ("re-cut" if row.needs_recut else "rescan" if row.needs_rescan else None)
            if key:
                self.counts[key] += 1
        self.done += len(rows)
        if self.bar is not None:
            self.bar.set_postfix({k: v for k, v in self.counts.items()}, refresh=False)
            self.bar.update(len(rows))
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        log.info(
            "progress: %d of %d slide(s) done, %d failed, %d rescan, %d re-cut, %d cannot be judged; about %.0f s left",
            self.done,
            self.total,
            self.counts["failed"],
            self.counts["rescan"],
            self.counts["re-cut"],
            self.counts["cannot judge"],
            left,
        )

    def close(self) -> None:
        """Close the bar, if there is one (a terminal)."""
        if self.bar is not None:
            self.bar.close()
