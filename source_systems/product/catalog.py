"""The product's tracking plan: its event types, the features users reach them through, and their clients.

Event types are small integer codes in the simulation (``EVENT_TYPES`` holds their names); the registry
decides which of them make a feature (registry: usage.features), so the truth maps names, never codes.
"""

from __future__ import annotations

import numpy as np

EVENT_TYPES = np.array(
    [
        "page.viewed",
        "search.performed",
        "user.signed_in",
        "report.created",
        "report.viewed",
        "dashboard.viewed",
        "dashboard.shared",
        "workflow.run",
        "integration.synced",
        "comment.added",
        "report.exported",
        "seat.assigned",
        "seat.revoked",
    ]
)
PAGE_VIEWED, SEARCH, SIGNED_IN = 0, 1, 2
EXPORTED = 10
SEAT_ASSIGNED, SEAT_REVOKED = 11, 12
# From the rename date the clients send report.exported under a new name (schema evolution).
RENAMED = {EXPORTED: "report.downloaded"}

# What users do with the product beyond looking around: the event types of each activity, and the share
# of customers that take it up at all.
ACTIVITIES: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("reports", (3, 4), 0.85),
    ("dashboards", (5, 6), 0.7),
    ("workflows", (7,), 0.45),
    ("integrations", (8,), 0.35),
    ("collaboration", (9,), 0.6),
    ("exports", (EXPORTED,), 0.5),
)
CORE_SHARE = 0.5  # of a session's events after sign-in: page views (four in five) and searches

WEB, IOS, ANDROID, SERVER = range(4)
PLATFORMS = np.array(["web", "ios", "android", "server"])
USER_AGENTS = {
    WEB: ["Mozilla/5.0 Chrome/124.0", "Mozilla/5.0 Firefox/125.0", "Mozilla/5.0 Safari/17.4", "Mozilla/5.0 Edg/124.0"],
    IOS: ["ProductApp/5.2 (iOS 17.4)"],
    ANDROID: ["ProductApp/5.2 (Android 14)"],
    SERVER: ["product-backend/2.8"],
}
APP_VERSIONS = np.array(["5.1.4", "5.2.0", "5.2.1"])
BOT_AGENTS = np.array(
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
        "python-requests/2.31.0",
    ]
)
PROBE_AGENTS = np.array(["kube-probe/1.29", "ELB-HealthChecker/2.0"])
SYNTHETIC_AGENT = "Datadog/Synthetics 1.0"
SYNTHETIC_USER = "synthetic-monitor"

COLLECTORS = ("c1", "c2", "c3")
PROBE_EVERY_MINUTES = 10  # each collector's load balancer health check
SYNTHETIC_EVERY_MINUTES = 30  # the synthetic monitoring journey: sign in, search

SECTIONS = np.array(["home", "reports", "dashboards", "workflows", "settings", "inbox", "projects", "help"])
SEARCHES = np.array(
    [
        "quarterly revenue",
        "churn by region",
        "open invoices",
        "pipeline forecast",
        "onboarding checklist",
        "team dashboard",
        "export settings",
        "integration errors",
    ]
)
COMMENTS = np.array(
    [
        "Looks good to me",
        "Can we add last quarter to this",
        "Numbers match the finance report",
        "Please review before Friday",
        "Shared with the regional leads",
        "Fixed the filter on the chart",
        "Why did this drop in March",
        "Approved",
    ]
)
TEMPLATES = np.array(["blank", "sales", "finance", "operations", "marketing"])
CONNECTORS = np.array(["salesforce", "hubspot", "netsuite", "sap", "snowflake"])
FORMATS = np.array(["csv", "xlsx", "pdf"])
CHANNELS = np.array(["email", "slack", "link"])
SIGN_IN_METHODS = np.array(["password", "sso"])
# Local working hours (the product is used at work): weight of each local hour of a weekday.
HOUR_WEIGHTS = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 4, 8, 10, 10, 9, 7, 9, 10, 9, 8, 6, 4, 3, 2.5, 2, 1, 0.5], dtype=float
)
WEEKDAY_FACTOR = np.array([1.0, 1.02, 1.0, 0.97, 0.85, 0.12, 0.08])  # Monday .. Sunday
UTC_OFFSET = {"US": -5, "CA": -5, "AU": 10, "GB": 0, "IE": 0, "DE": 1, "FR": 1, "NL": 1, "ES": 1}
