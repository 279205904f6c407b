"""Output: result files, reports, cohort figures and follow-up comparisons.

- :mod:`~mri_scoring.output.result` — :class:`StudyResult` and its ``score.json`` document
  (no files, no HTML).
- :mod:`~mri_scoring.output.write` — TSV tables, ``score.json``, the batch tables;
  :mod:`~mri_scoring.output.long_tables` — ``muscles_long.tsv`` and ``features_long.tsv``;
  :mod:`~mri_scoring.output.map_files` — the ``--maps`` NIfTI files.
- :mod:`~mri_scoring.output.dicom_out` — ``--dicom-out``: results back to the PACS, with
  :mod:`~mri_scoring.output.dicom_source` (the source series' frames),
  :mod:`~mri_scoring.output.dicom_seg` (SEG, FF Parametric Map) and
  :mod:`~mri_scoring.output.dicom_sr` (TID 1500 SR).
- :mod:`~mri_scoring.output.report` — the self-contained ``report.html`` of one study, with
  :mod:`~mri_scoring.output.comparisons` (one row and one section per template of the panel),
  :mod:`~mri_scoring.output.figures` (SVG bars), :mod:`~mri_scoring.output.levels` and
  :mod:`~mri_scoring.output.slices` (slice panels) and :mod:`~mri_scoring.output.norms_section`
  (the norms used and the population prior).
- :mod:`~mri_scoring.output.cohort` — the cohort heat map and ``index.html`` of a batch.
- :mod:`~mri_scoring.output.partials` — per-shard ``outcomes.jsonl``, appended as studies
  finish; :mod:`~mri_scoring.output.cohort_files` — every cohort file from the shards (the end
  of a batch, ``mri-scoring merge``); :mod:`~mri_scoring.output.parquet` — Parquet copies.
- :mod:`~mri_scoring.output.qc_queue` — ``outliers.tsv`` and ``mosaic.html``, with
  :mod:`~mri_scoring.output.thumbnail` (each study's mid-thigh slice).
- :mod:`~mri_scoring.output.render` — PNG, colour ramps and SVG without a plotting library.
- :mod:`~mri_scoring.output.longitudinal`, :mod:`~mri_scoring.output.followup`,
  :mod:`~mri_scoring.output.subject_page` — follow-up comparisons between a subject's sessions.

Data flows one way: ``result`` → ``report``/``cohort`` (through ``render``) → ``write``.
"""
