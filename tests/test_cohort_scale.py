"""Cohorts of many studies (issue 33): flat driver memory, shards and merge, Parquet, the QC
queue (outliers, mosaic, ratings), participant subsets and the BIDS derivative description.

One small cohort is scored once (module fixture, one worker); the shard, subset and exclusion
runs reuse its study folders through resume, so they cost discovery and bookkeeping only.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mri_scoring import phantom
from mri_scoring.batch import BatchOptions, Outcome, run_batch
from mri_scoring.config import load_settings
from mri_scoring.io.discover import StudyFiles, discover_studies
from mri_scoring.io.shards import select_studies, shard_of, subject_key
from mri_scoring.output import qc_queue
from mri_scoring.output.partials import OutcomeLog, finished_shards, iter_records
from mri_scoring.pattern.fit import cohort_evidence
from mri_scoring.pattern.templates import load_template
from mri_scoring.pipeline import merge_batch, score_batch

SHAPE = (64, 64, 10)
PLANTED = "planted"
COHORT_FILES = ("summary.tsv", "failures.tsv", "muscles_long.tsv", "features_long.tsv",
                "summary.parquet", "muscles_long.parquet", "features_long.parquet",
                "longitudinal.tsv", "longitudinal_features.tsv", "outliers.tsv", "mosaic.html",
                "index.html", "cohort_heatmap.svg", "dataset_description.json")  # fmt: skip


def _write(root: Path, name: str, seed: int, *, double_ff: bool = False, **meta: str) -> None:
    study = phantom.make_study("normal", seed=seed, shape=SHAPE, roles=("fat", "water", "stir"))
    if double_ff:  # the planted outlier: every voxel's Dixon fat fraction doubled (capped at 1)
        fat = study.images["fat"].astype(np.float64)
        total = fat + study.images["water"]
        ff = np.clip(2 * np.divide(fat, total, out=np.zeros_like(fat), where=total > 0), 0, 1)
        study.images["fat"] = (ff * total).astype(study.images["fat"].dtype)
        study.images["water"] = ((1 - ff) * total).astype(study.images["water"].dtype)
    study.metadata.update({"study_id": name, **meta})
    phantom.write_study(study, root / name)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Six normal studies (two are sessions of subject P1) and one with doubled FF, scored."""
    root = tmp_path_factory.mktemp("cohort") / "root"
    for i in range(4):
        _write(root, f"n{i}", seed=i, subject_id=f"S{i}")
    _write(root, "p1_v1", 11, subject_id="P1", session_id="v1", date="2024-01-10")
    _write(root, "p1_v2", 12, subject_id="P1", session_id="v2", date="2024-07-10")
    _write(root, PLANTED, 13, double_ff=True, subject_id="S9")
    out = root.parent / "whole"
    with pytest.MonkeyPatch.context() as patch:  # 7 studies: judge outliers from 5 on
        _few_studies(patch)
        summary = score_batch(root, out)
    return root, out, summary


def _few_studies(patch: pytest.MonkeyPatch) -> None:
    settings = qc_queue.qc_settings()
    small = {**settings, "outliers": {**settings["outliers"], "min_studies": 5}}
    patch.setattr(qc_queue, "qc_settings", lambda: small)


def _copy_scored(src: Path, dst: Path) -> None:
    """The study folders of a batch output, so that a run into ``dst`` reuses them."""
    dst.mkdir()
    for folder in src.iterdir():
        if (folder / "score.json").is_file():
            shutil.copytree(folder, dst / folder.name)


def _without_times(path: Path) -> bytes:
    return re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.0-9]*Z?", b"<time>", path.read_bytes())


def test_shards_then_merge_give_the_unsharded_cohort_files(cohort, tmp_path):
    """Guards against a merge that differs from one run (order, a lost shard's rows, the
    follow-up of a subject split across shards): every cohort file is byte-equal."""
    root, whole, _ = cohort
    out = tmp_path / "sharded"
    _copy_scored(whole, out)
    with pytest.MonkeyPatch.context() as patch:
        _few_studies(patch)
        for i in (1, 2, 3):
            part = score_batch(root, out, shard=f"{i}/3")
            assert part.attrs["reused"] == sorted(part["study_id"]), "resume reused every study"
        merged = merge_batch(out)
    assert len(merged) == 7
    # The differential panel's second template: its summary columns and heat-map call bar.
    assert "imnm_vs_dystrophy_call" in merged.columns
    assert "imnm_vs_dystrophy" in (out / "cohort_heatmap.svg").read_text()
    for name in COHORT_FILES:
        assert (whole / name).is_file(), name
        assert _without_times(out / name) == _without_times(whole / name), name
    shards = {n: {r["study_id"] for _, _, r in iter_records([s])}
              for n, s in enumerate(finished_shards(out), 1)}  # fmt: skip
    together = [n for n, ids in shards.items() if {"p1_v1", "p1_v2"} <= ids]
    assert len(together) == 1, f"the two sessions of P1 share one shard: {shards}"
    assert sum(map(len, shards.values())) == 7
    assert "P1" in (out / "longitudinal.tsv").read_text()


def test_merge_refuses_a_missing_shard(cohort, tmp_path):
    root, whole, _ = cohort
    out = tmp_path / "partial"
    _copy_scored(whole, out)
    score_batch(root, out, shard="2/3")
    with pytest.raises(Exception, match=r"1/3, 3/3 not finished"):
        merge_batch(out)


def test_adding_studies_moves_no_old_study_between_shards(tmp_path):
    """Guards against a split by position in the discovery (every shard shifts when one study
    is added): the shard follows the subject alone."""
    root = tmp_path / "r"

    def add(names: list[str]) -> dict[str, int]:
        for name in names:
            (root / name).mkdir(parents=True)
            (root / name / "labels.nii.gz").write_bytes(b"")
        found = discover_studies(root)
        return {s.study_id: shard_of(subject_key(s, root), 4) for s in found}

    before = add([f"a{i:02d}" for i in range(30)])
    after = add([f"b{i:02d}" for i in range(30)] + ["0first"])
    assert {k: after[k] for k in before} == before
    assert len(set(before.values())) == 4, "30 subjects spread over all four shards"


def test_participant_label_scores_only_that_subject(cohort, tmp_path):
    root, whole, _ = cohort
    out = tmp_path / "p1"
    _copy_scored(whole, out)
    summary = score_batch(root, out, participant_labels=["P1"])
    assert list(summary["study_id"]) == ["p1_v1", "p1_v2"]
    bids = StudyFiles(Path("/d/sub-07/ses-1/anat"), "sub-07_ses-1", {}, "bids")
    assert select_studies([bids], Path("/d"), labels=["sub-07"]) == [bids]
    assert select_studies([bids], Path("/d"), labels=["08"]) == []


def test_parquet_reads_back_equal_to_the_tsv(cohort):
    _, out, _ = cohort
    for name in ("summary", "muscles_long", "features_long"):
        tsv = pd.read_csv(out / f"{name}.tsv", sep="\t")
        table = pd.read_parquet(out / f"{name}.parquet")
        assert list(table.columns) == list(tsv.columns), name
        pd.testing.assert_frame_equal(table.astype(object).where(table.notna(), np.nan),
                                      tsv.astype(object).where(tsv.notna(), np.nan),
                                      check_dtype=False, obj=name)  # fmt: skip
    types = pd.read_parquet(out / "muscles_long.parquet").dtypes
    assert types["label"].kind == "i" and types["ff_median"].kind == "f"


def test_the_planted_outlier_heads_outliers_and_mosaic(cohort):
    """Guards against a queue sorted by id or by value (not by distance from the batch)."""
    _, out, _ = cohort
    outliers = pd.read_csv(out / "outliers.tsv", sep="\t")
    assert list(outliers.columns) == qc_queue.OUTLIER_COLUMNS
    assert outliers["study_id"].iloc[0] == PLANTED
    assert outliers["measure"].iloc[0] == "ff_median" and outliers["z"].iloc[0] > 3.5
    page = (out / "mosaic.html").read_text()
    first = re.search(r"<figcaption>([^<]+)<", page)
    assert first and first.group(1) == PLANTED
    assert (out / PLANTED / "thumb.png").read_bytes().startswith(b"\x89PNG")


def test_excluded_study_leaves_summary_heatmap_index_and_fit(cohort, tmp_path):
    """Guards against a ratings file that is written but never read."""
    _, whole, _ = cohort
    out = tmp_path / "rated"
    shutil.copytree(whole, out)
    (out / "qc_ratings.tsv").write_text(
        f"study_id\trating\texclude\tnote\n{PLANTED}\t1\ttrue\tfat shift artefact\nn0\t4\t\t\n"
    )
    summary = merge_batch(out)
    assert PLANTED not in set(summary["study_id"]) and len(summary) == 6
    for name in ("summary.tsv", "muscles_long.tsv", "cohort_heatmap.svg", "index.html"):
        assert PLANTED not in (out / name).read_text(), name
    assert PLANTED in (whole / "cohort_heatmap.svg").read_text(), "ids are shown at this size"
    assert (out / PLANTED / "score.json").is_file(), "its outputs stay on disk"
    labels = pd.DataFrame({"study_id": [PLANTED, "n0", "n1"], "diagnosis": ["IMNM", "DM", "DM"]})
    evidence = cohort_evidence(out, labels, load_template())
    assert PLANTED not in evidence.study_ids and "n0" in evidence.study_ids
    assert any("excluded" in w for w in evidence.warnings)


def test_dataset_description_is_a_bids_derivative(cohort):
    _, out, _ = cohort
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"][0]["Name"] == "mri_scoring"
    assert description["GeneratedBy"][0]["Version"]
    assert re.fullmatch(r"[0-9a-f]{64}", description["SettingsHash"])


def test_driver_memory_is_flat_in_the_number_of_studies(tmp_path):
    """Guards against a driver that keeps each study's row and heat-map values until the end
    (the old BatchRun: several kB per study, 5 GB at 100,000): allocations still held after 300
    studies exceed those after 100 by less than 100 bytes a study, and no outcome is kept."""
    options = BatchOptions(settings=load_settings(), template=load_template(), report=True)
    muscles = [f"muscle_{i}" for i in range(20)]

    def task(files: StudyFiles, out: Path, options: BatchOptions) -> Outcome:
        summary = {"study_id": files.study_id, **{f"feature_{i}": 0.5 for i in range(30)}}
        cohort = {m: {k: 0.1 for k in muscles} for m in ("ff_median", "edema_fraction")}
        return Outcome(study_id=files.study_id, path=str(files.folder), summary=summary,
                       cohort=cohort, subject="x")  # fmt: skip

    studies = [StudyFiles(tmp_path / f"s{i}", f"s{i:04d}", {}) for i in range(300)]
    for files in studies:  # a Path caches its text on first str(): the discovery's, not kept
        str(files.folder)
    log = OutcomeLog(tmp_path, (1, 1), {"columns": []})
    held: dict[int, int] = {}

    def progress(outcome: Outcome, done: int, failed: int, total: int) -> None:
        if done in (100, 300):
            gc.collect()
            held[done] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        run_batch(studies, tmp_path, options, task, resume=False, progress=progress,
                  sink=lambda o: log.append(o.record()))  # fmt: skip
    finally:
        tracemalloc.stop()
    log.finish()
    growth = (held[300] - held[100]) / 200
    assert growth < 100, f"{growth:.0f} bytes held per study"
    assert sum(isinstance(o, Outcome) for o in gc.get_objects()) <= 1
    assert sum(1 for _ in iter_records([tmp_path / "shards" / "1-of-1"])) == 300


def test_command_line_shard_label_and_merge(cohort, tmp_path):
    """``batch --shard --participant-label`` and ``merge`` as typed (in-process, resumed)."""
    from typer.testing import CliRunner

    from mri_scoring.cli import app

    root, whole, _ = cohort
    out = tmp_path / "cli"
    _copy_scored(whole, out)
    runner = CliRunner()
    for i in (1, 2):
        done = runner.invoke(app, ["-q", "batch", str(root), "--out", str(out), "--shard",
                                   f"{i}/2", "--participant-label", "P1",
                                   "--participant-label", "n0"])  # fmt: skip
        assert done.exit_code == 0, done.output
    merged = runner.invoke(app, ["merge", str(out)])
    assert merged.exit_code == 0 and "3 studies" in merged.output, merged.output
    assert sorted(pd.read_csv(out / "summary.tsv", sep="\t")["study_id"]) == ["n0", "p1_v1",
                                                                              "p1_v2"]  # fmt: skip
    bad = runner.invoke(app, ["batch", str(root), "--out", str(out), "--shard", "3/2"])
    assert bad.exit_code == 1 and "--shard must be I/N" in bad.output


def _echo(files: str, out: Path, options: object) -> str:
    return files


class _CountingClient:
    """A dask client that counts what is submitted (everything else is the real client's)."""

    def __init__(self, client: object) -> None:
        self.client, self.submitted = client, 0

    def submit(self, *args: object, **kwargs: object) -> object:
        self.submitted += 1
        return self.client.submit(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)


def test_dask_window_scores_every_study_and_keeps_the_window(tmp_path):
    """Guards against the first window taken as ``zip(queue, range(window))``: zip pulls one
    study past the window from the queue before ``range`` ends and drops it (249 of 250 were
    scored). Nine studies through a window of four on a one-thread in-process cluster: every
    one reported once, never more than four in flight."""
    distributed = pytest.importorskip("dask.distributed")
    from mri_scoring import dask_engine

    todo = [f"s{i}" for i in range(9)]
    reported: list[str] = []
    in_flight: list[int] = []
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        counting = _CountingClient(client)

        def report(outcome: str) -> None:
            in_flight.append(counting.submitted - len(reported))
            reported.append(outcome)

        dask_engine._run_window(counting, todo, (tmp_path, "options", 1), report, _echo,
                                lambda files, exc: f"lost {files}")  # fmt: skip
    assert sorted(reported) == todo, "every study reported once, none dropped"
    assert max(in_flight) <= dask_engine.DASK_WINDOW_PER_WORKER == 4


def test_outlier_screen_matches_the_modified_z_definition_per_muscle_and_side(tmp_path):
    """The outlier screen (integer group codes, numpy medians) against the modified z-score
    written out plainly per (muscle, side) with pandas: 0.6745 (x - median) / MAD, the mean
    absolute deviation x 1.2533 where the MAD is 0, no z below ``min_studies`` measured values,
    missing values and missing sides left out. Guards against groups merged across sides (one
    left-right pair is planted so that only the right side's value is far), a missing value
    counted as a study, and a NaN side treated as a side."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        for muscle in ("semitendinosus", "vastus_lateralis", "gracilis"):
            for side in ("left", "right", ""):
                ff = rng.normal(0.10, 0.02) if side != "right" else rng.normal(0.30, 0.02)
                if muscle == "gracilis":
                    ff = 0.05 if i % 10 else 0.07  # MAD 0: the mean deviation stands in
                edema = np.nan if (i % 7 == 0 and side == "left") else rng.normal(0.1, 0.01)
                rows.append({"study_id": f"s{i:02d}", "muscle": muscle, "side": side,
                             "kind": "muscle", "ff_median": ff, "edema_fraction": edema,
                             "fascial_edema_fraction": np.nan, "volume_ml": 100.0})  # fmt: skip
    rows[3]["ff_median"] = 0.30  # s00's left vastus at the right sides' level: far only as left
    rows.append({**rows[0], "study_id": "s99", "side": "left", "volume_ml": 500.0,
                 "kind": "group"})  # fmt: skip
    table = pd.DataFrame(rows)
    path = tmp_path / "muscles_long.tsv"
    table.to_csv(path, sep="\t", index=False, na_rep="")
    settings = {"measures": ["ff_median", "edema_fraction", "fascial_edema_fraction",
                             "volume_ml"], "min_studies": 10, "z_threshold": 3.5}  # fmt: skip
    found = qc_queue.find_outliers(path, settings)
    expected = []
    plain = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])
    plain = plain[(plain["kind"] == "muscle") & plain["side"].notna()]
    for measure in settings["measures"]:
        for (muscle, side), part in plain.groupby(["muscle", "side"]):
            values = part[measure].dropna()
            if len(values) < settings["min_studies"]:
                continue
            median = values.median()
            mad = (values - median).abs().median()
            scale = mad / 0.6745 if mad > 0 else (values - median).abs().mean() * 1.2533
            if scale == 0:
                continue
            z = (values - median) / scale
            for index in z.index[z.abs() > 3.5]:
                expected.append((part.loc[index, "study_id"], muscle, side, measure,
                                 round(float(z[index]), 9)))  # fmt: skip
    got = [(r.study_id, r.muscle, r.side, r.measure, round(float(r.z), 9))
           for r in found.itertuples()]  # fmt: skip
    assert sorted(got) == sorted(expected)
    far = [g for g in got if g[3] == "ff_median" and g[1] == "vastus_lateralis"]
    assert [g[:4] for g in far] == [("s00", "vastus_lateralis", "left", "ff_median")]
    assert far[0][4] > 3.5 and not any(g[2] == "" or g[2] == "nan" for g in got)
