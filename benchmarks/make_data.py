"""Realistic-size benchmark studies: int16 Dixon fat + water, STIR, and a 30-label map.

    python benchmarks/make_data.py [--shape 512 512 80] [--out benchmarks/data]

The phantom's hip muscles are merged into background so that 15 muscles per side (30 labels)
remain, as in a typical thigh segmentation. Shapes used in the benchmark: 224x168x64,
512x512x80 and 448x448x160. Data goes to benchmarks/data/ (git-ignored).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mri_scoring import phantom

THIGH_MUSCLES = ("vastus_intermedius", "vastus_lateralis", "vastus_medialis", "rectus_femoris",
                 "sartorius", "gracilis", "adductor_longus", "adductor_brevis",
                 "adductor_magnus", "semimembranosus", "semitendinosus",
                 "biceps_femoris_long_head", "biceps_femoris_short_head", "pectineus",
                 "obturator_externus")  # fmt: skip
ROLES = ("fat", "water", "stir")


def make(shape: tuple[int, int, int], out: Path, seed: int = 0, pattern: str = "imnm") -> Path:
    """Write one benchmark study of the given shape; returns its folder."""
    study = phantom.make_study(
        pattern,
        seed=seed,
        shape=shape,
        roles=ROLES,
        reference_labels=False,
        study_id=f"bench-{'x'.join(map(str, shape))}",
    )
    keep = {v for v, info in study.label_info.items() if info.muscle in THIGH_MUSCLES}
    study.labels[~np.isin(study.labels, sorted(keep))] = 0
    study.label_info = {v: i for v, i in study.label_info.items() if v in keep}
    study.truth = {}
    folder = out / study.study_id
    phantom.write_study(study, folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, action="append")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    for shape in args.shape or [(224, 168, 64), (512, 512, 80), (448, 448, 160)]:
        start = time.perf_counter()
        folder = make(tuple(shape), args.out)
        print(f"{folder}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
