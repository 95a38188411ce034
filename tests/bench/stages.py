"""Where a scan's detector time goes: each detector alone, over events parsed once.

    python tests/bench/stages.py LOG [LOG...]

For each log: its events are parsed once and kept, then fed (in the reader's batches) to a
fresh pipeline holding one member at a time: each detector, the timeline collector
(``series``), and nothing (``none``: the pipeline's own loop). CPU seconds, best of 2, and the
cost per event. Parsing is measured by ``measure.py parse`` instead: holding every event alive
here makes the garbage collector's passes longer than in a scan.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from agent.pipeline import Pipeline  # noqa: E402
from agent.series import SeriesCollector  # noqa: E402
from agent.sources.replay import FileReport, iter_file_event_batches  # noqa: E402
from detectors import REGISTRY, build_detectors  # noqa: E402


def main(paths: list) -> None:  # type: ignore[type-arg]
    for path in paths:
        batches = list(iter_file_event_batches(path, FileReport(path)))
        events = sum(map(len, batches))
        cells = []
        for name in list(REGISTRY) + ["series", "none"]:
            best = float("inf")
            for _ in range(2):
                members = [SeriesCollector()] if name == "series" else [] if name == "none" else build_detectors([name], None, None)
                pipeline = Pipeline(members)  # type: ignore[arg-type]
                started = time.process_time()
                for batch in batches:
                    pipeline.feed_batch(batch)
                pipeline.flush(None)
                best = min(best, time.process_time() - started)
            cells.append(f"{name} {best:.3f} s ({best / max(events, 1) * 1e6:.2f} us/event)")
        print(f"{os.path.basename(path)}: {events:,} events; " + "; ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
