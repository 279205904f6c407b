"""Imported by the batch fork server only (see workers.PRELOAD).

Fills, once, the caches that every worker would otherwise fill while scoring its first study
(the Rician inverse table, the software versions for score.json); forked workers inherit them.
"""

from .measure.fat import rician_inverse_lookup
from .pipeline import software_versions

rician_inverse_lookup()
software_versions()
