"""Cohort-scale batch benchmark: driver and worker memory, throughput, both engines.

    python benchmarks/cohort.py make N DATA          # N small studies (copies of 20 phantoms)
    python benchmarks/cohort.py run DATA OUT --engine processes|dask [--workers 2]
        [--pythonpath TREE]                          # e.g. a checkout of main, for a baseline

``make`` writes 20 phantom studies of 64x64x12 (imnm, dm, normal, different seeds) and N study
folders whose files are hard links to them (each with its own ``study.json`` ``study_id``), so
10,000 studies cost little disk. ``run`` scores them with ``mri-scoring batch`` (as a user
would, resume off) in a fresh process and samples, every 0.5 s, the resident memory of the
driver and of every worker process (psutil); it prints one JSON object: seconds, studies per
minute, the driver's peak RSS, the driver's and the workers' RSS after 10, 25, 50, 75 and 100 %
of the run, and a dask scheduler's peak RSS (its own process: not the driver's, not a worker's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

PATTERNS = ("imnm", "dm", "normal")


def make(n: int, data: Path) -> None:
    """Write 20 template studies under ``data/.templates`` and ``n`` hard-linked copies."""
    from mri_scoring import phantom

    templates = data / ".templates"
    sources = []
    for i in range(20):
        folder = templates / f"t{i:02d}"
        if not (folder / "study.json").is_file():
            study = phantom.make_study(PATTERNS[i % 3], seed=i, shape=(64, 64, 12))
            phantom.write_study(study, folder)
            (folder / "truth.json").unlink(missing_ok=True)
        sources.append(folder)
    for k in range(n):
        target = data / f"s{k:06d}"
        if (target / "study.json").is_file():
            continue
        target.mkdir(parents=True, exist_ok=True)
        source = sources[k % len(sources)]
        for file in source.iterdir():
            if file.name == "study.json":
                meta = json.loads(file.read_text())
                meta["study_id"] = target.name
                (target / "study.json").write_text(json.dumps(meta))
            elif not (target / file.name).exists():
                os.link(file, target / file.name)


def _tree_rss(pid: int) -> tuple[int, list[int], int]:
    """RSS of the driver, of each worker-side child, and of a dask scheduler child (0 if none)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        driver = proc.memory_info().rss
        workers, scheduler = [], 0
        for child in proc.children(recursive=True):
            try:
                rss = child.memory_info().rss
                if "distributed.Scheduler" in " ".join(child.cmdline()):
                    scheduler = rss
                else:
                    workers.append(rss)
            except psutil.Error:
                pass
        return driver, workers, scheduler
    except psutil.Error:
        return 0, [], 0


def run(data: Path, out: Path, engine: str, workers: int, pythonpath: str | None) -> dict:
    """Score ``data`` into a fresh ``out`` in a child process; memory sampled meanwhile."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # The driver is the mri-scoring process itself (the python running cli.main).
    cmd = [sys.executable, "-c", "from mri_scoring.cli import main; main()", "-q", "batch",
           str(data), "--out", str(out), "--workers", str(workers), "--engine", engine,
           "--no-resume"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int, list[int], int]] = []

    def sample() -> None:
        while proc.poll() is None:
            driver, children, scheduler = _tree_rss(proc.pid)
            if driver:
                samples.append((time.perf_counter() - start, driver, children, scheduler))
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    total = time.perf_counter() - start
    thread.join()
    n = sum(1 for p in data.iterdir() if not p.name.startswith("."))
    mib = 1 / 2**20

    checkpoints = (0.1, 0.25, 0.5, 0.75, 1.0)

    def at(fraction: float) -> tuple[float, int, list[int], int]:
        return samples[min(len(samples) - 1, int(fraction * (len(samples) - 1)))]

    def workers_at(fraction: float) -> list[float]:
        return sorted(round(r * mib) for r in at(fraction)[2])[-max(workers, 1) :]

    return {
        "engine": engine,
        "studies": n,
        "returncode": proc.returncode,
        "seconds": round(total, 1),
        "studies_per_min": round(n / total * 60, 1),
        "driver_peak_rss_mib": round(max((s[1] for s in samples), default=0) * mib),
        "checkpoints": checkpoints,
        "driver_rss_mib_at": [round(at(f)[1] * mib) for f in checkpoints] if samples else [],
        "worker_rss_mib_at": [workers_at(f) for f in checkpoints] if samples else [],
        "scheduler_peak_rss_mib": round(max((s[3] for s in samples), default=0) * mib),
        "stdout": stdout.decode()[-300:],
        "stderr": stderr.decode()[-600:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p_make = sub.add_parser("make")
    p_make.add_argument("n", type=int)
    p_make.add_argument("data", type=Path)
    p_run = sub.add_parser("run")
    p_run.add_argument("data", type=Path)
    p_run.add_argument("out", type=Path)
    p_run.add_argument("--engine", default="processes")
    p_run.add_argument("--workers", type=int, default=2)
    p_run.add_argument("--pythonpath")
    args = parser.parse_args()
    if args.verb == "make":
        make(args.n, args.data)
    else:
        print(json.dumps(run(args.data, args.out, args.engine, args.workers, args.pythonpath)),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
