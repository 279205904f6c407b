"""Worker processes for batches: forked from a server that has already imported the pipeline.

Kept free of heavy imports so that the command line can start the server first, and the server
imports the pipeline (about half a second) while this process imports it too.

Every process of a batch dies with the process that started it, however that one dies (even
SIGKILL, which runs no clean-up code): the fork server and each worker ask the kernel for a
SIGKILL when their parent exits (``prctl(PR_SET_PDEATHSIG)`` on Linux), and where that call does
not exist a thread polls the parent's pid. Without this, a killed batch leaves its fork server and
workers running forever: each worker holds the other end of the pipes it would wait on.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.context import BaseContext

__all__ = [
    "PARENT_PID_VARIABLE",
    "PRELOAD",
    "die_with_parent",
    "server_started",
    "start_worker_server",
    "unguarded_main_script",
    "worker_context",
    "worker_started",
    "workers_can_start",
]

PRELOAD = [
    "mri_scoring.pipeline",
    "mri_scoring.batch",  # imported by the pipeline only where a batch runs (not by `score`)
    "mri_scoring.output.thumbnail",
    "mri_scoring.output.dicom_out",
    "mri_scoring._forkserver_warmup",
]

#: Environment variable naming the batch process's pid, for the fork server it starts.
PARENT_PID_VARIABLE = "MRI_SCORING_BATCH_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_S = 0.5

#: Set in the fork server (and so inherited by every worker it forks): the server's pid.
server_pid: int | None = None


def _kernel_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_S)
    os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit as soon as the process ``parent_pid`` (its parent) is gone.

    Parameters
    ----------
    parent_pid : int
        The pid this process's parent had when it was started. If the parent is already gone
        (the process was re-parented), this process exits at once.
    """
    if not _kernel_parent_death_signal():
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), daemon=True, name="mri_scoring-parent-watch"
        ).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def server_started() -> None:
    """Called once in the fork server: it dies with the batch process that started it."""
    global server_pid
    server_pid = os.getpid()
    parent = os.environ.get(PARENT_PID_VARIABLE, "")
    die_with_parent(int(parent) if parent.isdigit() else os.getppid())


def worker_started(batch_pid: int) -> None:
    """Initializer of every pool worker: it dies with its parent (fork server or batch).

    Parameters
    ----------
    batch_pid : int
        Pid of the batch process: the parent of workers started without a fork server.
    """
    die_with_parent(server_pid if server_pid is not None else batch_pid)


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, *test.comparators]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    texts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(texts) == 1


def unguarded_main_script() -> str | None:
    """The script this call runs from, if it runs unguarded at its top level; else None.

    Unguarded: in the script's top-level code outside an ``if __name__ == "__main__":`` block.

    Worker processes started by spawn or a fork server import the main script again: top-level
    code that starts workers would then run once more in every worker (Python refuses it with
    a "bootstrapping phase" error in each). Interactive sessions and notebooks have no script
    and are never reported.

    Returns
    -------
    str or None
        Path of the unguarded script.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)
    ):
        frame = frame.f_back
    if frame is None:  # not called from the script's top level (a thread, a callback)
        return None
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                return None
    return path


def workers_can_start(context: BaseContext) -> bool:
    """Whether a worker process starts and runs a trivial task (after a pool broke).

    Parameters
    ----------
    context : multiprocessing context
        The context the batch's pools use.

    Returns
    -------
    bool
        False when a fresh worker dies before it can run anything: the failure is then the
        workers' start-up (an import, the main script run again), not one study.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=worker_started, initargs=(os.getpid(),)
    ) as probe:
        try:
            probe.submit(os.getpid).result()
        except BrokenProcessPool:
            return False
    return True


def worker_context() -> BaseContext:
    """The fork-server context with the pipeline preloaded; where fork is unavailable, spawn.

    A fork server starts workers fast and without inherited threads.
    """
    os.environ[PARENT_PID_VARIABLE] = str(os.getpid())  # read by the fork server it starts
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now (no-op if running or unavailable).

    Its imports then overlap with this process's own work instead of delaying the first worker.
    """
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
