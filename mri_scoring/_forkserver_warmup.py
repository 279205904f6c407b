"""Imported by the batch fork server only (see workers.PRELOAD).

Makes the server die with the batch process that started it, then fills, once, the caches that
every worker would otherwise fill while scoring its first study (the Rician inverse table, the
software versions for score.json); forked workers inherit them.
"""

from .workers import server_started

server_started()

from .measure.fat import rician_inverse_lookup  # noqa: E402 - after the server is tied to its parent
from .output.result import software_versions  # noqa: E402

rician_inverse_lookup()
software_versions()
