"""A curious or careless user: every hostile input is denied, audited, and reads nothing it should not."""

from __future__ import annotations

import duckdb
import pytest

from dataops.governance import audit
from dataops.governance.gateway import Denied
from tests.governance.conftest import Governed

pytestmark = pytest.mark.xdist_group("built")

HOSTILE = {
    "second statement": "select 1; select * from marts.fct_gl_entries",
    "attach": "attach 'data/warehouse/restricted.duckdb' as r",
    "copy to": "copy (select * from marts.fct_leads) to '/tmp/leads.csv'",
    "install": "install httpfs",
    "load": "load httpfs",
    "set": "set memory_limit = '100GB'",
    "pragma": "pragma threads = 64",
    "read_parquet on the lake": "select * from read_parquet('{root}/lake/raw/crm/leads/*/*.parquet')",
    "read_csv on the exports": "select * from read_csv('{root}/sources/accounting/exports/*/payments.csv')",
    "glob": "select * from glob('{root}/**')",
    "the restricted file": "select * from '{root}/warehouse/restricted.duckdb'",
    "a parquet path": "select * from '{root}/lake/raw/crm/leads/date=2025-01-01/x.parquet'",
    "read_text": "select read_text('/etc/passwd')",
    "getenv": "select getenv('HOME')",
    "export database": "export database '/tmp/everything'",
    "not sql": "selec everything frm nowhere",
    "catalog name": "select * from restricted.marts.fct_gl_entries",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_denied_and_audited(governed: Governed, case: str) -> None:
    sql = HOSTILE[case].format(root=governed.settings.data_dir)
    before = len(audit.read(governed.settings))
    with pytest.raises(Denied) as denied:
        governed.gateway().run(governed.user("analyst"), sql, door="cli")
    assert denied.value.reason
    records = audit.read(governed.settings)[before:]
    assert len(records) == 1 and records[0]["allowed"] is False and records[0]["statement"] == sql
    assert records[0]["rows"] == 0


def test_duckdb_is_the_second_wall(governed: Governed) -> None:
    """Even a query that got past the parser could not read files or lift a limit on the gateway's connection."""
    conn = governed.gateway()._connect("256MB", 1, restricted=False)
    try:
        with pytest.raises(duckdb.Error):
            conn.execute(
                f"select * from read_csv('{governed.settings.data_dir}/sources/accounting/exports/*/payments.csv')"
            ).fetchall()
        with pytest.raises(duckdb.Error):
            conn.execute("set memory_limit = '64GB'")
        with pytest.raises(duckdb.Error):
            conn.execute(f"attach '{governed.settings.restricted_db}' as other (read_only)")
        assert conn.execute("select current_setting('memory_limit')").fetchall()[0][0].startswith("244")
    finally:
        conn.close()
