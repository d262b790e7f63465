"""Serving the dbt documentation site on loopback: the three files dbt generates and nothing else."""

from __future__ import annotations

from pathlib import Path

from dataops.core.site import LoopbackSite
from dataops.transform.docs import SITE_FILES

# dbt's page runs its own inline code; it may load its two files from here and reach no other server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def docs_site(folder: Path, host: str, port: int) -> LoopbackSite:
    """The docs generated in ``folder``, served on loopback (port 0: any free port); not yet serving."""
    routes = {f"/{name}": folder / name for name in SITE_FILES} | {"/": folder / "index.html"}
    return LoopbackSite(
        routes,
        host=host,
        port=port,
        what="documentation site",
        missing="not generated yet: `dataops docs serve` generates it",
        content_security_policy=CONTENT_SECURITY_POLICY,
    )
