"""Reading studies from disk (discovery, NIfTI and DICOM input): the first room of the pipeline.

- :mod:`~mri_scoring.io.discover` — which files of a folder play which role (simple layout,
  BIDS with sessions, MuscleMap/Musclesense outputs): :class:`StudyFiles`.
- :mod:`~mri_scoring.io.inputs` — every file a study's scoring reads and their SHA-256 digests.
- :mod:`~mri_scoring.io.nifti` — reading NIfTI (gunzip, header checks, RAS+ reorientation).
- :mod:`~mri_scoring.io.tables` — label tables, label schemes, ``study.json``.
- :mod:`~mri_scoring.io.label_files` — label table files as tools write them (BIDS TSV,
  ITK-SNAP, 3D Slicer) and the order they are looked for.
- :mod:`~mri_scoring.io.role_content` — does each image hold what its role says (a T2 map under
  a STIR name, seconds, a T1w that is not T1-weighted).
- :mod:`~mri_scoring.io.label_profiles` — one walk over the label map: values, per-axis counts.
- :mod:`~mri_scoring.io.label_geometry` — the body midline, sides from anatomy, unsided labels
  split.
- :mod:`~mri_scoring.io.study` — the :class:`Study` container, :func:`load_study` and its
  spatial checks.
- :mod:`~mri_scoring.io.subjects` — which subject and session a study is, and when.
- :mod:`~mri_scoring.io.shards` — ``--shard I/N`` (by a hash of the subject) and
  ``--participant-label`` subsets of a discovery.
- :mod:`~mri_scoring.io.qc_ratings` — a reviewer's ``qc_ratings.tsv`` (ratings, exclusions).
- :mod:`~mri_scoring.io.dicom`, :mod:`~mri_scoring.io.dicom_series`,
  :mod:`~mri_scoring.io.dicom_roles` — DICOM exports to BIDS study folders;
  :mod:`~mri_scoring.io.dicom_refs` — their DICOM references (``convert --dicom-refs``).
- :mod:`~mri_scoring.io.dicom_enhanced` — enhanced MR headers (EchoPulseSequence, the MR
  modifier and timing groups) read into the facts the role rules use.
- :mod:`~mri_scoring.io.dicom_guard` — guarded header reads: a file that does not parse is
  skipped with its reason, pydicom's warnings captured.

Data flows one way: ``discover`` → ``nifti``/``tables`` → ``study``. Nothing here imports a
later stage (measurement, grading, pattern, output), except ``dicom``, which fits the MESE T2
map with :mod:`mri_scoring.measure.t2fit`.
"""
