"""Worker processes that end with the script that started them."""

from __future__ import annotations

import os
import sys
import threading
import time


def end_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` ends, even by kill -9 (a worker process's initializer).

    On Linux the kernel sends SIGTERM when the parent dies (PR_SET_PDEATHSIG);
    elsewhere a daemon thread checks every second that the parent is still there.
    """
    import ctypes
    import signal

    # Ctrl-C reaches every process of the terminal's group: the parent alone handles it (it stops
    # handing out slides, lets the ones under way finish and says so in one line), so no worker
    # dies with a traceback in the middle of a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
                if os.getppid() != parent_pid:  # the parent died before prctl: nobody will signal
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
