"""The pattern room: match graded muscles against a disease template and weigh the evidence.

Data flows ``templates`` (load a template YAML) → ``match`` (measure each template feature on a
study's muscle table) → ``likelihood`` (combine the features' soft evidence into a posterior).
``classifier`` wraps the same evidence model as a scikit-learn estimator for fitting the
template's probabilities to a labelled cohort.
"""
