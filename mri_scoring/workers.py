"""Worker processes for batches: forked from a server that has already imported the pipeline.

Kept free of heavy imports so that the command line can start the server first, and the server
imports the pipeline (about half a second) while this process imports it too.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ["mri_scoring.pipeline", "mri_scoring._forkserver_warmup"]


def worker_context() -> BaseContext:
    """The fork-server context with the pipeline preloaded (fast worker start, no inherited
    threads); where fork is unavailable, spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now (no-op if running or unavailable): its imports then overlap
    with this process's own work instead of delaying the first worker."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
