"""The enterprise's own product: how its customers' users use it, and the event pipeline that delivers it.

``behaviour`` decides who uses the product how much each day (users are the CRM's contacts, so every
event rolls up to a customer through the account hierarchy); ``delivery`` turns what they do into what a
real collector fleet delivers: gzip-compressed NDJSON objects per hour and collector instance with a
manifest per hour, with the dirt of real event pipelines, recorded in the dirt log.
"""

from __future__ import annotations

# Where the collectors deliver, under the simulated systems' directory (dataops.core.settings agrees).
EVENTS_DIR = ("product", "events")
