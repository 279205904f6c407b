"""The measurement room: per-muscle fat fraction, edema, fascial edema, volume and atrophy.

Modules, in the order data flows through them:

* :mod:`.masks` -- cores, peri-muscular shells, label boxes (window min/max over the label map);
* :mod:`.voxel_sets` -- voxel sets and per-label reductions (histogram quantiles, means);
* :mod:`.noise` -- the Dixon noise sigma (background or muscle differences);
* :mod:`.fat` -- Dixon FF with Rician bias removed, FF maps, T1w mixture, fat-water swap check;
* :mod:`.fat_scale` -- subcutaneous fat and marrow readings (a compressed scale, fat-referenced FF);
* :mod:`.bias` -- smooth STIR bias fields; :mod:`.reference` -- is the STIR reference normal;
* :mod:`.water_t2` -- water-T2 reference numbers for the field strength;
* :mod:`.edema` -- STIR against normal muscle after a bias fit, T2-map thresholds, fascial edema;
* :mod:`.coverage` -- which muscles the stack holds whole, cross-sectional areas per slice;
* :mod:`.paediatric` -- children's norms (limb lean mass for age, sex, height; fat; MRI T2);
* :mod:`.norms` -- volume from body size, thigh fat by age and sex, joined to children's norms;
* :mod:`.atrophy` -- volume shares against normative shares, left/right ratios;
* :mod:`.matched_levels` -- a cut muscle's atrophy from cross-sections at matched levels;
* :mod:`.compartments` -- the subcutaneous fat per side (``compartments.tsv``);
* :mod:`.t2fit` -- water T2 from multi-echo spin echo (mono-exponential, EPG water/fat);
* :mod:`.registry` -- which muscle-table columns each per-muscle measure fills;
* :mod:`.voxel_maps` -- the per-voxel masks and values behind a table;
* :mod:`.quantify` -- :func:`~.quantify.quantify` assembles one table per study.

Column records and QC codes live in :mod:`mri_scoring.schema`.
"""
