"""The measurement room: per-muscle fat fraction, edema, fascial edema, volume and atrophy.

Modules, in the order data flows through them:

* :mod:`.masks` -- cores, peri-muscular shells, label boxes (window min/max over the label map);
* :mod:`.voxel_sets` -- voxel sets and per-label reductions (histogram quantiles, means);
* :mod:`.fat` -- Dixon FF with Rician bias removed, FF maps, T1w mixture, fat-water swap check;
* :mod:`.edema` -- STIR against normal muscle after a bias fit, T2-map thresholds, fascial edema;
* :mod:`.atrophy` -- volume shares against normative shares, left/right ratios;
* :mod:`.t2fit` -- water T2 from multi-echo spin echo (mono-exponential, EPG water/fat);
* :mod:`.quantify` -- :func:`~.quantify.quantify` assembles one table per study.

Column names and QC codes live in :mod:`mri_scoring.schema`.
"""
