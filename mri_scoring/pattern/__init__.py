"""The pattern room: match graded muscles against a disease template and weigh the evidence.

Data flows :mod:`.templates` (load and validate a template YAML, its fields read through
:mod:`.template_checks`) → :mod:`.match` (measure each
template feature on a study's muscle table through :mod:`.measures`, the one registry of
template measures) → :mod:`.likelihood` (combine the features' soft evidence into a posterior);
:mod:`.panel` asks every template of a differential panel (two classes each) of one study.
:mod:`.population` reads the same likelihood ratio with a population's prior (a second
posterior, never the call).
:mod:`.classifier` wraps the same evidence model as a scikit-learn estimator; :mod:`.fit` fits
the template's probabilities to a labelled cohort and :mod:`.fit_report` draws its report.
"""
