"""Reading studies from disk (discovery, NIfTI and DICOM input): the first room of the pipeline.

- :mod:`~mri_scoring.io.discover` — which files of a folder play which role (simple layout,
  BIDS with sessions, MuscleMap/Musclesense outputs): :class:`StudyFiles`.
- :mod:`~mri_scoring.io.nifti` — reading NIfTI (gunzip, header checks, RAS+ reorientation).
- :mod:`~mri_scoring.io.tables` — label tables, label schemes, ``study.json``.
- :mod:`~mri_scoring.io.study` — the :class:`Study` container, :func:`load_study` and its
  spatial checks.

Data flows one way: ``discover`` → ``nifti``/``tables`` → ``study``. Nothing here imports a
later stage (measurement, grading, pattern, output).
"""
