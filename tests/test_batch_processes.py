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


def _run_script(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_unguarded_script_with_two_workers_scores_every_study(tmp_path):
    """Regression: a plain script (no ``if __name__ == "__main__":``) asking for 2 workers had
    every worker re-run it (16 bootstrapping tracebacks), every study "died", exit 0."""
    root = tmp_path / "root"
    for i in range(3):
        write_phantom(root / f"s{i}", "imnm", seed=40 + i, shape=SHAPE)
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(f"""
        import mri_scoring as ms
        summary = ms.score_batch({str(root)!r}, out={str(tmp_path / "out")!r}, workers=2,
                                 report=False)
        print("rows", len(summary), "failures", len(summary.attrs["failures"]))
    """))
    done = _run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rows 3 failures 0" in done.stdout
    assert "bootstrapping" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "if __name__" in done.stderr, "the fallback to one process must say why"


@pytest.mark.slow
def test_workers_that_cannot_start_are_reported_as_such(tmp_path):
    """Regression: workers dying at start-up (here the script's own top level refuses to run
    again in them) were reported as "worker process died ... (out of memory or crash)" for
    every study."""
    root = tmp_path / "root"
    write_phantom(root / "s0", "imnm", seed=44, shape=SHAPE)
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent(f"""
        import mri_scoring as ms
        if __name__ == "__mp_main__":  # run again in a worker process: refuse
            raise RuntimeError("this script cannot run in a worker")
        if __name__ == "__main__":
            try:
                ms.score_batch({str(root)!r}, out={str(tmp_path / "out")!r}, workers=2,
                               report=False)
            except ms.MriScoringError as exc:
                print("error:", exc)
    """))
    done = _run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "worker processes exit while starting" in done.stdout, done.stdout + done.stderr
    assert "out of memory" not in done.stdout + done.stderr
