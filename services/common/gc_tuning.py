"""The garbage collector tuned for a server's latency.

Python collects its oldest generation when enough objects have survived two younger
collections, and such a collection walks every object the process holds: measured in the api
under a flood of WatchServers snapshots (each 1,000 servers, held while they stream), 4 full
collections in 8 s took 90-127 ms each, and every call in flight waited for them (another
project's CreateServer p99 140 ms against 20 ms unloaded). After start, the objects every
service keeps for its lifetime (modules, SQLAlchemy's tables, protobuf descriptors) are moved
out of the collector's sight (``gc.freeze``), and collections are made rarer: most garbage is
freed by reference counting anyway; the collector is only for cycles.
"""

from __future__ import annotations

import gc

# Young-generation collections between two middle-generation ones, and middle between two
# old (Python's defaults: 10 and 10).
MIDDLE_EVERY = 20
OLD_EVERY = 100


def tune_collector(*, young_objects: int) -> None:
    """Call once the service is started: what exists now lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_objects, MIDDLE_EVERY, OLD_EVERY)
