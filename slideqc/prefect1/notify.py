"""Messages to a chat webhook (Slack's incoming-webhook JSON, ``{"text": ...}``) about a QC run.

For the notifications extra (extras/pipeline_prefect_notify.py): its flow's state handler hands
the run's rows here when the flow run ends. One message per slide that needs someone (a rescan,
a re-cut, a failure, a slide that cannot be judged) and one summary of the run.

A webhook never costs a slide its result: each post waits at most :data:`TIMEOUT` seconds, and
the first post that fails (the receiver is down, slow, or answers with an error) is the last of
the run: one warning line says so, and the messages left are not sent.

Prefect's own ``prefect.utilities.notifications.slack_notifier`` is not used: it posts with no
timeout (a slow receiver holds the run for as long as it sleeps), raises when the post fails (a
state handler that raises fails the flow run), reads the URL from a Prefect Secret, and its
message is a Prefect state's name, not a slide's verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import requests

from slideqc.output.results import SlideResult

TIMEOUT = 2.0  # seconds a post may take, connecting included

log = logging.getLogger("slideqc")


def slide_message(row: SlideResult) -> str | None:
    """Return the message about one slide, or None when it passed (status ok) and needs nobody."""
    if row.failed:
        return f"FAILED: {row.file_name}: {row.reason or row.error}"
    if row.unjudged:
        return f"CANNOT JUDGE: {row.file_name}: {row.reason or row.error}"
    if row.needs_rescan:
        return (
            f"RESCAN: {row.file_name}: {row.percent_blurry:.1f} % of the usable tissue is blurry "
            f"(more than {100 * (row.blur_max or 0):.1f} %)"
        )
    if row.needs_recut:
        return (
            f"RE-CUT: {row.file_name}: {row.fold_percent:.1f} % of the tissue is folded "
            f"(more than {100 * (row.fold_max or 0):.1f} %)"
        )
    return None


def summary_message(flow_name: str, rows: Sequence[SlideResult], run_dir: str | None = None) -> str:
    """One line about the flow run: how many slides, and how many of each status."""
    counts = {
        "ok": sum(r.ok for r in rows),
        "rescan": sum(r.needs_rescan for r in rows),
        "re-cut": sum(r.needs_recut for r in rows),
        "cannot judge": sum(r.unjudged for r in rows),
        "failed": sum(r.failed for r in rows),
    }
    text = f"{flow_name}: {len(rows)} slide(s): " + ", ".join(f"{n} {what}" for what, n in counts.items())
    return f"{text}; results in {run_dir}" if run_dir else text


def post(url: str, text: str, timeout: float = TIMEOUT) -> None:
    """POST ``{"text": text}`` to ``url``; raises ``requests.RequestException`` when it fails or answers an error."""
    answer = requests.post(url, json={"text": text}, timeout=timeout)
    answer.raise_for_status()


def notify_run(
    url: str, flow_name: str, rows: Sequence[SlideResult], run_dir: str | None = None, timeout: float = TIMEOUT
) -> int:
    """Post a message per slide that needs someone, then the summary; returns how many were posted.

    The first post that fails ends the posting, with one warning line: the run goes on.
    """
    messages = [m for m in (slide_message(r) for r in rows) if m] + [summary_message(flow_name, rows, run_dir)]
    for sent, text in enumerate(messages):
        try:
            post(url, text, timeout)
        except requests.RequestException as error:
            answer = getattr(error, "response", None)
            why = type(error).__name__ + (f" {answer.status_code}" if answer is not None else "")
            log.warning("webhook %s: %s; %d of %d message(s) not sent", url, why, len(messages) - sent, len(messages))
            return sent
    return len(messages)
