"""Speed and memory of mri_scoring against the cost of just reading the data.

    python benchmarks/make_data.py            # once: writes benchmarks/data/
    python benchmarks/bench.py [--runs 5] [--study benchmarks/data/bench-512x512x80]
                               [--throughput 20] [--skip-pyradiomics]

Prints medians of --runs runs with min-max:
  1. load time of the study's files alone: nibabel (its own gzip), and mri_scoring's reader
     (one read per file, hashed as read) with the standard gzip and with isal if installed;
  2. each stage (load, quantify, grade, match + likelihood, report) and the whole
     `mri-scoring score` process, as ratios to (1) and to a process that only loads the files;
  3. per-label statistics of a naive boolean mask per label, and pyradiomics first-order features
     if it is installed, per channel, against quantification;
  4. peak memory (ru_maxrss) of the score process against the decompressed study;
  5. batch throughput with 1 and 2 workers (studies of 256x256x40; a fresh process per batch:
     whole-process and steady rates).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float, float, object]:
    """Median, min and max seconds of ``runs`` calls (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), result


def fmt(stats: tuple, reference: float | None = None) -> str:
    median, low, high = stats[:3]
    text = f"{median:7.3f} s  ({low:.3f}-{high:.3f})"
    if reference:
        text += f"   x{median / reference:5.2f}"
    return text


PEAK_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_utime + u.ru_stime); print(u.ru_maxrss)"
)


def run_processes(
    commands: dict[str, list[str]], runs: int
) -> dict[str, tuple[float, float, float, int, float]]:
    """Per command: wall time of a child process (median/min/max), peak RSS (bytes), CPU time (s).

    The commands run in turn, round after round, so that a slow spell of a shared machine falls
    on all of them alike (measured: run one after the other, the load-only process varied
    1.1-1.9 s and the ratio 1.24-1.53 between sessions). The peak is read by a small wrapper
    process: a child forked from this (large) benchmark process would report this process's
    memory as its own peak. One untimed round first, as a user who runs a command twice sees it
    (byte-compiled modules, files in the page cache), in the environment a user has
    (``PYTHONDONTWRITEBYTECODE`` removed). CPU time (user + system, median) varies less than
    wall time.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    wrapped = {name: [sys.executable, "-c", PEAK_WRAPPER, *cmd] for name, cmd in commands.items()}
    for command in wrapped.values():
        subprocess.run(command, check=True, capture_output=True, env=env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, list[int]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in wrapped.items():
            start = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            times[name].append(time.perf_counter() - start)
            cpu_s, peak_kib = done.stdout.strip().splitlines()[-2:]
            cpu[name].append(float(cpu_s))
            peaks[name].append(int(peak_kib) * 1024)
    stats = {}
    for name, wall in times.items():
        median_cpu = statistics.median(cpu[name])
        stats[name] = (statistics.median(wall), min(wall), max(wall), max(peaks[name]), median_cpu)
    return stats


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python "
        f"{platform.python_version()}, numpy {np.__version__}, nibabel {nib.__version__}"
    )


def load_files_nibabel(folder: Path) -> list[np.ndarray]:
    return [nib.load(p).get_fdata(dtype=np.float32) for p in sorted(folder.glob("*.nii*"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=HERE / "data" / "bench-512x512x80")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--throughput", type=int, default=60, help="studies (0: skip)")
    parser.add_argument("--skip-pyradiomics", action="store_true")
    parser.add_argument("--only-throughput", action="store_true", help="run section 5 only")
    args = parser.parse_args()
    if args.only_throughput:
        throughput(args.throughput)
        return

    import mri_scoring.io.nifti as nifti_module
    from mri_scoring.grading import grade
    from mri_scoring.io.study import load_study
    from mri_scoring.measure.quantify import quantify
    from mri_scoring.output.report import study_report_html
    from mri_scoring.pattern.likelihood import combine
    from mri_scoring.pattern.match import involved_muscles, match
    from mri_scoring.pattern.templates import load_template
    from mri_scoring.pipeline import score_study

    if not args.study.is_dir():
        from make_data import make

        make((512, 512, 80), args.study.parent)
    folder = args.study
    files = sorted(folder.glob("*.nii*"))
    print(f"machine: {machine()}")
    shapes = {p.name: nib.load(p).shape for p in files}
    decompressed = sum(nib.load(p).dataobj.dtype.itemsize * int(np.prod(nib.load(p).shape))
                       for p in files)  # fmt: skip
    print(
        f"study: {folder.name}: {len(files)} files {shapes}, "
        f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB on disk, "
        f"{decompressed / 2**20:.1f} MiB decompressed\n"
    )

    print("1. load the files alone")
    # Only the times are kept: the loaded arrays (640 MiB of float32) would otherwise stay alive
    # through every later measurement and slow it (measured: quantify 0.56 s instead of 0.42 s).
    nib_stats = timed(lambda: load_files_nibabel(folder), args.runs)[:3]
    print(f"   nibabel nib.load().get_fdata(float32)      {fmt(nib_stats)}")
    fast = nifti_module._gunzip
    nifti_module._gunzip = __import__("gzip").decompress
    gzip_stats = timed(lambda: load_study(folder), args.runs)[:3]
    nifti_module._gunzip = fast
    print(f"   mri_scoring load_study, standard gzip      {fmt(gzip_stats, nib_stats[0])}")
    load_stats = timed(lambda: load_study(folder), args.runs)
    decoder = "isal" if fast is not __import__("gzip").decompress else "gzip (isal absent)"
    print(f"   mri_scoring load_study, {decoder:<19}{fmt(load_stats, nib_stats[0])}")
    reference = nib_stats[0]

    print("\n2. stages (ratio to nibabel load time)")
    study = load_stats[3]
    template = load_template()
    q_stats = timed(lambda: quantify(study), args.runs)
    q1_stats = timed(lambda: quantify(study, threads=1), args.runs)
    table = q_stats[3].table
    g_stats = timed(lambda: grade(table), args.runs)
    graded = g_stats[3]
    l_stats = timed(
        lambda: combine(match(graded, template), template, involved_muscles(graded, template)),
        args.runs,
    )
    result = score_study(study)
    r_stats = timed(lambda: study_report_html(result), args.runs)
    for name, stats in (
        ("load (ours)", load_stats),
        ("quantify", q_stats),
        ("quantify, one thread", q1_stats),
        ("grade", g_stats),
        ("match + likelihood", l_stats),
        ("report", r_stats),
    ):
        print(f"   {name:<24}{fmt(stats, reference)}")
    with tempfile.TemporaryDirectory() as tmp:
        loader = [
            sys.executable,
            "-c",
            "import sys, numpy, nibabel as nib; "
            "[nib.load(p).get_fdata(dtype=numpy.float32) for p in sys.argv[1:]]",
            *map(str, files),
        ]
        score_cmd = [
            sys.executable,
            "-m",
            "mri_scoring.cli",
            "--quiet",
            "score",
            str(folder),
            "--out",
            tmp,
        ]
        procs = run_processes(
            {"load": loader, "score": score_cmd, "no_report": [*score_cmd, "--no-report"]},
            args.runs,
        )
        load_proc, score_proc, nr_proc = procs["load"], procs["score"], procs["no_report"]
    print(f"   process: load files only         {fmt(load_proc)}")
    print(f"   process: mri-scoring score       {fmt(score_proc, load_proc[0])}  (vs load-only)")
    print(f"   process: score --no-report       {fmt(nr_proc, load_proc[0])}  (vs load-only)")
    for name, proc in (("load files only", load_proc), ("score", score_proc),
                       ("score --no-report", nr_proc)):  # fmt: skip
        print(f"   CPU time: {name:<22} {proc[4]:6.2f} s   x{proc[4] / load_proc[4]:5.2f}")

    print("\n3. per-label statistics, per channel")
    labels = study.labels
    values = [int(v) for v in study.label_values]
    channel = study.images["water"]

    def naive() -> None:
        for v in values:
            voxels = channel[labels == v]
            voxels.mean(), np.median(voxels), np.percentile(voxels, 90)

    naive_stats = timed(naive, max(args.runs // 2, 2))
    channels = sum(1 for r in ("fat", "water", "stir") if r in study.images) - 1  # FF + STIR
    per_channel = q_stats[0] / max(channels, 1)
    print(f"   naive boolean mask per label ({len(values)} labels) {fmt(naive_stats)}")
    print(
        f"   mri_scoring quantify, per channel ({channels} channels: FF, STIR+shell) "
        f"{per_channel:.3f} s -> naive is x{naive_stats[0] / per_channel:.1f} slower"
    )
    if not args.skip_pyradiomics:
        try:
            import SimpleITK as sitk
            from radiomics import featureextractor

            extractor = featureextractor.RadiomicsFeatureExtractor()
            extractor.disableAllFeatures()
            extractor.enableFeatureClassByName("firstorder")
            image = sitk.GetImageFromArray(channel.T.astype(np.float32))

            def pyrad() -> None:
                mask = sitk.GetImageFromArray(labels.T.astype(np.int32))
                for v in values:
                    extractor.execute(image, mask, label=v)

            py_stats = timed(pyrad, 1)
            print(
                f"   pyradiomics first-order, all labels {fmt(py_stats)} -> x"
                f"{py_stats[0] / per_channel:.1f} the per-channel time of quantify"
            )
        except ImportError:
            print("   pyradiomics not installed: skipped (pip install pyradiomics)")

    print("\n4. peak memory")
    print(
        f"   mri-scoring score: {score_proc[3] / 2**20:.0f} MiB peak RSS = "
        f"x{score_proc[3] / decompressed:.2f} the decompressed study "
        f"({decompressed / 2**20:.0f} MiB); load-only process: "
        f"{load_proc[3] / 2**20:.0f} MiB"
    )

    if args.throughput:
        throughput(args.throughput)


def throughput(n: int, runs: int = 3) -> None:
    """Section 5: batch throughput with 1 and 2 workers on n phantom studies of 256x256x40.

    Each batch runs in a fresh process (batch_driver.py), as from the command line: the figures
    include interpreter start, imports, worker start-up and the cohort report. The steady rate
    counts the studies finished after the first one over the time they took, which is what a
    long cohort run sees.
    """
    import json

    from mri_scoring import phantom

    print(f"\n5. batch throughput, {n} studies of 256x256x40, fresh process per batch, "
          f"{runs} runs each")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        for i in range(n):
            made = phantom.make_study(
                ("imnm", "dm", "normal")[i % 3],
                seed=i,
                shape=(256, 256, 40),
                roles=("fat", "water", "stir"),
            )
            phantom.write_study(made, root / f"s{i:03d}")
        whole: dict[int, list[float]] = {1: [], 2: []}
        steady: dict[int, list[float]] = {1: [], 2: []}
        for run in range(runs):
            for workers in (1, 2):
                out = Path(tmp) / f"out{workers}-{run}"
                command = [sys.executable, str(HERE / "batch_driver.py"), str(root), str(out),
                           "--workers", str(workers)]  # fmt: skip
                start = time.perf_counter()
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                elapsed = time.perf_counter() - start
                times = json.loads(done.stdout.strip().splitlines()[-1])["results"]
                whole[workers].append(n / elapsed * 60)
                steady[workers].append((n - 1) / (times[-1] - times[0]) * 60)
        for workers in (1, 2):
            w, st = sorted(whole[workers]), sorted(steady[workers])
            print(f"   {workers} worker(s): whole process {statistics.median(w):6.1f} studies/min "
                  f"({w[0]:.1f}-{w[-1]:.1f}); steady {statistics.median(st):6.1f} studies/min "
                  f"({st[0]:.1f}-{st[-1]:.1f})")  # fmt: skip
        for name, rates in (("whole process", whole), ("steady", steady)):
            ratio = statistics.median(rates[2]) / statistics.median(rates[1])
            print(f"   speed-up with 2 workers, {name}: x{ratio:.2f}")


if __name__ == "__main__":
    main()
