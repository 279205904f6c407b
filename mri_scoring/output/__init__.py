"""Output: result files, reports, cohort figures and follow-up comparisons.

- :mod:`~mri_scoring.output.result` — :class:`StudyResult` and its ``score.json`` document
  (no files, no HTML).
- :mod:`~mri_scoring.output.write` — TSV tables, ``score.json``, the batch tables.
- :mod:`~mri_scoring.output.report` — the self-contained ``report.html`` of one study.
- :mod:`~mri_scoring.output.cohort` — the cohort heat map and ``index.html`` of a batch.
- :mod:`~mri_scoring.output.render` — PNG, colour ramps and SVG without a plotting library.
- :mod:`~mri_scoring.output.longitudinal`, :mod:`~mri_scoring.output.followup`,
  :mod:`~mri_scoring.output.subject_page` — follow-up comparisons between a subject's sessions.

Data flows one way: ``result`` → ``report``/``cohort`` (through ``render``) → ``write``.
"""
