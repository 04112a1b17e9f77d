"""For the extra "Prefect's own cost": an explicit, named opt-in that skips Prefect 1.4.1's identical config merge."""

from __future__ import annotations

from contextlib import contextmanager


def skip_identical_config_merge() -> None:
    """Opt in: make Prefect 1.4.1 skip merging its configuration into itself on every task run.

    ``prefect.context(...)`` merges the ``config`` it is given into the current
    one (a recursive copy of the whole configuration, ~6 ms here). The flow and
    task runners enter it two or three times per task run with a ``config``
    equal to the one already there: the context's own object in a serial flow
    run, a copy of it in an executor's worker thread (Prefect's context is one
    per thread) or in a worker process (it came pickled). The merge then yields
    yet another equal copy: ~95 % of Prefect's overhead per task (profiled with
    pyinstrument and py-spy; benchmarks/prefect_task_overhead.py: 9.5 ms ->
    0.2 ms per task run, docs/benchmark.md). This keeps the current object
    when the given one is it or equal to it (a dict comparison, microseconds);
    a different config is merged as before. The one difference: a task that
    mutated ``prefect.context.config`` in place would now change it for the
    rest of the run. It replaces ``Context.__call__`` for the whole process,
    which is why it is never done on import: extras/pipeline_prefect_fast_context.py
    and benchmarks/with_fast_context.py call it, knowingly. Worker processes
    forked after the call (LocalDaskExecutor's processes on Linux) inherit it;
    spawned ones (a Dask cluster's workers) run stock Prefect. Idempotent.
    """
    from prefect.utilities.collections import merge_dicts
    from prefect.utilities.context import Context

    if getattr(Context.__call__, "skips_identical_config", False):
        return

    @contextmanager
    def call(self, *args, **kwargs):
        previous_context = self.__dict__.copy()
        try:
            new_context = dict(*args, **kwargs)
            current = self.get("config", {})
            if "config" in new_context:
                # The same or an equal copy (from another thread or process): a merge would copy it again.
                if new_context["config"] is current or new_context["config"] == current:
                    new_context["config"] = current
                else:
                    new_context["config"] = merge_dicts(current, new_context["config"])
            self.update(new_context)
            yield self
        finally:
            self.clear()
            self.update(previous_context)

    call.skips_identical_config = True  # type: ignore[attr-defined]  # a marker on the function, read back by getattr
    call.__doc__ = Context.__call__.__doc__
    Context.__call__ = call  # type: ignore[method-assign]  # replacing Prefect's method is this module's one job
