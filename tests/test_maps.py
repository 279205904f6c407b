"""Per-voxel maps behind the muscle table: the voxels a figure or a map file shows are exactly the
voxels the table counted (guards against maps recomputed by other rules that drift from it)."""

from __future__ import annotations

import numpy as np
import pytest

from mri_scoring import phantom
from mri_scoring.config import load_settings
from mri_scoring.measure.quantify import quantify

SHAPE = (96, 96, 16)


@pytest.mark.parametrize("roles", [("fat", "water", "stir"), ("ff", "t2map"), ("t2map",)])
def test_voxel_maps_reproduce_the_table_counts(roles):
    """edema voxels per label = edema_fraction x counted voxels, shell hits = fascial fraction x
    shell voxels, core = core_voxels; counted voxels are muscle core voxels that are not fatty."""
    study = phantom.make_study("dm", seed=7, shape=SHAPE, roles=roles)
    measured = quantify(study, voxel_maps=True)
    maps, table = measured.voxel_maps, measured.table.set_index("label")
    assert quantify(study).voxel_maps is None  # only on request
    grid = np.unravel_index(maps.index, maps.shape)
    np.testing.assert_array_equal(study.labels[grid], maps.label)  # same voxels, same labels
    assert maps.index.size == int(table["voxels"].sum())
    counted = maps.label_count(maps.edema_counted)
    edema = maps.label_count(maps.edema)
    muscles = table[table["kind"] == "muscle"]
    # Every muscle with an edema fraction is counted; one with too few assessable voxels has an
    # empty cell, a flag, and no counted voxels.
    measured = muscles["edema_fraction"].notna()
    assert set(counted) == set(muscles.index[measured])
    assert muscles.loc[~measured, "qc_flags"].str.contains("edema_too_few_voxels").all()
    assert measured.sum() >= len(muscles) - 4
    for label, row in muscles.iterrows():
        n = counted.get(label, 0)
        if n:
            assert edema.get(label, 0) == round(row["edema_fraction"] * n), label
        shell = maps.label_count(np.ones(maps.shell_label.shape, bool), shell=True).get(label, 0)
        hits = maps.label_count(maps.shell_edema, shell=True).get(label, 0)
        assert shell == row["shell_voxels"], label  # a deep muscle may have no own shell
        if np.isfinite(row["fascial_edema_fraction"]):
            assert hits == round(row["fascial_edema_fraction"] * shell), label
        else:  # too few shell voxels: nothing shown as fascial edema either
            assert hits == 0 and "fascial_too_few_voxels" in row["qc_flags"], label
    whole = table["qc_flags"].str.contains("small_core_whole_mask_used")  # core too small
    expected_core = table["core_voxels"].where(~whole, table["voxels"])
    assert maps.label_count(maps.core) == {int(k): int(v) for k, v in expected_core.items() if v}
    assert not (maps.edema & ~maps.edema_counted).any()
    assert not (maps.edema_counted & ~maps.core).any()
    if maps.ff is not None:  # fatty voxels never count as edema
        fatty = load_settings()["quantify"]["fatty_voxel_ff"]
        assert not (maps.edema_counted & (maps.ff > fatty)).any()
    else:
        assert "ff" not in roles and "fat" not in roles


def test_planes_are_slices_of_the_volume():
    study = phantom.make_study("imnm", seed=8, shape=SHAPE, roles=("fat", "water", "stir"))
    maps = quantify(study, voxel_maps=True).voxel_maps
    ff = maps.volume(maps.ff, fill=np.nan)
    shell = maps.volume(maps.shell_edema, shell=True)
    for k in (0, 7, SHAPE[2] - 1):
        np.testing.assert_array_equal(maps.plane(maps.ff, k, fill=np.nan), ff[:, :, k])
        np.testing.assert_array_equal(maps.plane(maps.shell_edema, k, shell=True), shell[..., k])
    assert np.isnan(ff[study.labels == 0]).all()  # nothing outside the labels is invented
    assert np.isfinite(ff[study.labels > 0]).mean() > 0.95


@pytest.mark.parametrize("ornt", [None, np.array([[1, -1], [0, -1], [2, 1]])])
def test_map_files_open_on_the_label_grid_and_count_what_the_table_counted(tmp_path, ornt):
    """Written maps lie on the label file's grid as stored (here also a label map stored
    transposed and flipped): same shape and affine, each mask's label values where the label
    map has them, and per muscle edema voxels = edema_fraction x assessed voxels (core, muscle,
    not fatty). A map left in RAS+ order fails the transposed case."""
    import nibabel as nib

    from mri_scoring.io.study import load_study
    from mri_scoring.output.map_files import write_maps

    from .helpers import reorient_folder

    folder = phantom.write_study(phantom.make_study("imnm", seed=9, shape=SHAPE), tmp_path / "s")
    if ornt is not None:
        reorient_folder(folder, ornt)
    study = load_study(folder)
    measured = quantify(study, voxel_maps=True)
    written = write_maps(tmp_path / "maps", study, measured.voxel_maps)
    assert sorted(p.name for p in written) == sorted(
        f"{n}.nii.gz" for n in ("fat_fraction", "core", "edema", "shell", "fascial_edema"))
    stored = nib.load(folder / "labels.nii.gz")
    labels = np.asanyarray(stored.dataobj)
    maps = {p.name.split(".")[0]: nib.load(p) for p in written}
    for name, image in maps.items():
        assert image.shape == labels.shape, name
        np.testing.assert_allclose(image.affine, stored.affine, atol=1e-5)
    ff = maps["fat_fraction"].get_fdata(dtype=np.float32)
    assert maps["fat_fraction"].get_data_dtype() == np.float32
    assert np.isnan(ff[labels == 0]).all() and np.nanmax(ff) <= 1.0 and np.nanmin(ff) >= 0.0
    masks = {n: np.asanyarray(maps[n].dataobj) for n in ("core", "edema", "shell")}
    assert all(m.dtype == np.uint8 for m in masks.values())
    for name in ("core", "edema"):
        on = masks[name] > 0
        np.testing.assert_array_equal(masks[name][on], labels[on])  # the label value, in place
    assert not (masks["shell"] > 0)[labels > 0].any()  # the shell lies outside every label
    fatty = load_settings()["quantify"]["fatty_voxel_ff"]
    table = measured.table.set_index("label")
    for label, row in table[table["kind"] == "muscle"].iterrows():
        assessed = (masks["core"] == label) & ~(ff > fatty)
        edema = int((masks["edema"] == label).sum())
        if np.isnan(row["edema_fraction"]):  # too few voxels: an empty cell, nothing mapped
            assert edema == 0, label
            continue
        assert edema == round(row["edema_fraction"] * int(assessed.sum())), label
