"""One study's cost against the cost of reading its files (issue 33's speed figure).

    python benchmarks/score_vs_read.py [--data benchmarks/data/dense] [--runs 3] [--batch 4]

Makes (once) a 512x512x80 Dixon (fat, water) + STIR study whose labels cover at least 20 % of
the volume, as a real 512x512 thigh scan's muscles do (the phantom drawn with a 260 mm field of
view), then measures, ``--runs`` times each:

* ``score``: a fresh ``mri-scoring score STUDY --out TMP`` process (default panel, report on);
* ``read``: a fresh process that imports nibabel and reads the four files raw
  (``np.asanyarray(img.dataobj)``, no float conversion);
* ``isal``: decoding the four ``.nii.gz`` files with isal alone, in this process (the floor);
* ``batch``: the steady per-study time of a one-worker batch of ``--batch`` copies (the time
  between consecutive results after the first).

Prints one JSON object: the medians, ``score / read``, ``batch / read`` and each against
``isal``, and the fraction of the volume the labels cover.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROLES = ("fat", "water", "stir")
READ = ("import sys, numpy as np, nibabel as nib\n"
        "for f in sys.argv[1:]:\n    np.asanyarray(nib.load(f).dataobj)\n")  # fmt: skip


def make(folder: Path) -> Path:
    """The dense study (written once)."""
    if (folder / "labels.nii.gz").is_file():
        return folder
    from mri_scoring import phantom

    study = phantom.make_study("imnm", seed=0, shape=(512, 512, 80), roles=ROLES,
                               voxel_size_mm=(260 / 512, 260 / 512, 5.0),
                               study_id="dense-512x512x80")  # fmt: skip
    study.truth = {}
    phantom.write_study(study, folder)
    (folder / "truth.json").unlink(missing_ok=True)
    return folder


def coverage(folder: Path) -> float:
    """Fraction of the volume's voxels that carry a label."""
    import nibabel as nib

    labels = np.asanyarray(nib.load(folder / "labels.nii.gz").dataobj)
    return float((labels > 0).mean())


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def _isal(files: list[Path]) -> float:
    from isal import igzip

    start = time.perf_counter()
    for file in files:
        igzip.decompress(file.read_bytes())
    return time.perf_counter() - start


def _batch_steady(study: Path, copies: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        for k in range(copies):
            target = root / f"c{k}"
            target.mkdir(parents=True)
            for file in study.iterdir():
                if file.name == "study.json":
                    meta = json.loads(file.read_text())
                    meta["study_id"] = target.name
                    (target / file.name).write_text(json.dumps(meta))
                else:
                    os.link(file, target / file.name)
        code = ("import json, sys, time\nfrom mri_scoring.pipeline import score_batch\n"
                "t = []\nscore_batch(sys.argv[1], sys.argv[2], resume=False, "
                "progress=lambda *a: t.append(time.perf_counter()))\n"
                "print(json.dumps(t))\n")  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code, str(root), str(Path(tmp) / "out")],
                              check=True, capture_output=True, text=True)  # fmt: skip
        times = json.loads(done.stdout.strip().splitlines()[-1])
        return statistics.median(np.diff(times)) if len(times) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "data" / "dense")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    study = make(args.data)
    files = [study / f"{role}.nii.gz" for role in (*ROLES, "labels")]
    score, read, isal = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            score.append(_wall([sys.executable, "-m", "mri_scoring.cli", "-q", "score",
                                str(study), "--out", out]))  # fmt: skip
        read.append(_wall([sys.executable, "-c", READ, *map(str, files)]))
        isal.append(_isal(files))
    steady = _batch_steady(study, args.batch) if args.batch > 1 else float("nan")
    med = {k: statistics.median(v) for k, v in (("score", score), ("read", read),
                                                ("isal", isal))}  # fmt: skip
    print(json.dumps({
        "labelled_fraction": round(coverage(study), 3),
        "score_s": [round(x, 2) for x in score], "read_s": [round(x, 2) for x in read],
        "isal_s": [round(x, 3) for x in isal], "batch_steady_s": round(steady, 2),
        "score_over_read": round(med["score"] / med["read"], 2),
        "batch_over_read": round(steady / med["read"], 2),
        "score_over_isal": round(med["score"] / med["isal"], 2),
        "batch_over_isal": round(steady / med["isal"], 2),
        "load_average": os.getloadavg()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
