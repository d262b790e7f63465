"""The enterprise's own product as its users and its collectors see it: the tracking plan (``catalog``), the
text of an event line (``render``), and the collector fleet's objects and manifests (``collector``).

Who uses it how much, and what the event pipeline does to their events on the way (late, duplicated, cut
off, with skewed clocks), is the simulator's business: ``simulator/usage.py`` and ``simulator/events.py``.
"""

from __future__ import annotations

# Where the collectors deliver, under the simulated systems' directory (dataops.core.settings agrees).
EVENTS_DIR = ("product", "events")
