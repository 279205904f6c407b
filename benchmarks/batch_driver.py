"""Run one batch in a fresh process and print when each study finished (for bench.py, section 5).

    python benchmarks/batch_driver.py ROOT OUT --workers N

Prints one JSON object: seconds from process start to the end of the batch (``total``), to the
pipeline being imported (``ready``) and to each study's result (``results``).
"""

import json
import sys
import time

START = time.perf_counter()


def main() -> None:
    root, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[sys.argv.index("--workers") + 1])
    from mri_scoring.workers import start_worker_server

    if workers > 1:
        start_worker_server()  # as the command line does
    from mri_scoring.pipeline import score_batch

    ready = time.perf_counter() - START
    results: list[float] = []
    score_batch(root, out, workers=workers, resume=False,
                progress=lambda *_: results.append(time.perf_counter() - START))  # fmt: skip
    total = time.perf_counter() - START
    print(json.dumps({"ready": ready, "results": results, "total": total}))


if __name__ == "__main__":
    main()
