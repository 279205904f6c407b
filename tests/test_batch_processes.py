"""The processes of a batch: none outlives the batch, and scripts without a main guard work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import batch_command, write_phantom

SHAPE = (64, 64, 10)
LINUX_PROC = Path("/proc/self/stat").exists()


def _parent_pid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(root_pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_pid(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found, frontier = set(), {root_pid}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow
@pytest.mark.skipif(not LINUX_PROC, reason="reads the process tree from /proc")
def test_sigkill_of_a_two_worker_batch_leaves_no_process_alive(tmp_path):
    """Regression: the fork server and the workers of a SIGKILLed batch ran on as orphans of
    init (each holds the other end of the pipes it waits on, so none ever saw an end of file)."""
    root = tmp_path / "root"
    for i in range(6):
        write_phantom(root / f"s{i}", ("imnm", "dm")[i % 2], seed=30 + i, shape=SHAPE)
    out = tmp_path / "out"
    process = subprocess.Popen(batch_command(root, out, "--workers", "2", "--no-report"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    family: set[int] = set()
    # Wait until two workers run (fork server + two workers, + the resource tracker).
    while time.time() < deadline and process.poll() is None:
        family |= _descendants(process.pid)
        if len(family) >= 3 and list(out.glob("*/score.json")):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the batch ended before it could be killed midway"
    family |= _descendants(process.pid)
    assert len(family) >= 3, f"expected a fork server and two workers, saw {family}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(10)  # the bound: nothing of the batch alive 10 s after its death
    survivors = sorted(pid for pid in family if _alive(pid))
    for pid in survivors:  # do not leak them into the rest of the test session
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"processes of the killed batch still alive 10 s later: {survivors}"


@pytest.mark.skipif(not LINUX_PROC, reason="reads the process tree from /proc")
def test_parent_watch_fallback_ends_a_child_whose_parent_died(tmp_path):
    """Where the kernel cannot signal a parent's death (not Linux), a polling thread must end the
    process; regression guard for the fallback path, forced here on Linux."""
    script = tmp_path / "orphan.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from mri_scoring import workers
        workers._kernel_parent_death_signal = lambda: False
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            workers.die_with_parent(os.getppid())
            os.write(write, b"armed")
            time.sleep(60)
            os._exit(0)
        os.read(read, 5)
        print(child, flush=True)
        os._exit(0)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    child = int(done.stdout.split()[0])
    deadline = time.time() + 10
    while time.time() < deadline and _alive(child):
        time.sleep(0.1)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived its parent by 10 s with only the polling fallback"
