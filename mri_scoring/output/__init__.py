"""Output: result files, reports, cohort figures and follow-up comparisons."""
