"""The organisations: hierarchies up to three levels, and the two roll-up cases of the schema rule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

from source_systems.simulator.world import build_world

pytestmark = pytest.mark.xdist_group("tiny")


def _erp_contracts_by_customer(sources: Path) -> pl.DataFrame:
    with sqlite3.connect(sources / "erp" / "erp.sqlite") as conn:
        rows = conn.execute("select contract_no, customer_no from contracts where contract_no like 'K0%'").fetchall()
    contracts = pl.DataFrame(rows, schema=["contract_no", "customer_no"], orient="row")
    owners = pl.read_parquet(sources / "truth" / "bill_to_customers.parquet")
    return contracts.join(owners, on="customer_no")


def test_hierarchies_are_up_to_three_levels_deep() -> None:
    world = build_world(seed=3, scale=0.2)
    assert world.acc_level.max() == 3
    assert set(world.acc_level.tolist()) == {0, 1, 2, 3}
    # every account's parent chain ends at its customer's top account
    for acc in range(world.n_accounts):
        top = acc
        while world.acc_parent[top] >= 0:
            top = int(world.acc_parent[top])
        assert world.cust_top_account[world.acc_customer[acc]] == top


def test_one_parent_holds_thirteen_contracts_across_divisions(tiny_sources: Path) -> None:
    world = build_world(seed=7, scale=0.05)
    contracts = _erp_contracts_by_customer(tiny_sources)
    parent0 = world.acc_crm_id[world.cust_top_account[0]]
    mine = contracts.filter(pl.col("customer_key") == parent0)
    assert mine.height == 13
    # spread over several bill-to entities belonging to different divisions
    bills = world.bill_customer_no.tolist()
    divisions = set()
    for customer_no in mine["customer_no"].unique():
        acc = int(world.bill_account[bills.index(customer_no)])
        while world.acc_level[acc] > 1:
            acc = int(world.acc_parent[acc])
        divisions.add(acc)
    assert len(divisions) >= 3


def test_five_divisions_each_hold_their_own_contract(tiny_sources: Path) -> None:
    world = build_world(seed=7, scale=0.05)
    contracts = _erp_contracts_by_customer(tiny_sources)
    parent1 = world.acc_crm_id[world.cust_top_account[1]]
    mine = contracts.filter(pl.col("customer_key") == parent1)
    assert mine.height == 5
    assert mine["customer_no"].n_unique() == 5
    children = world.acc_parent == world.cust_top_account[1]
    assert int(children.sum()) == 5


def test_direct_customers_exist_only_in_the_erp() -> None:
    world = build_world(seed=7, scale=0.05)
    direct = world.bill_account < 0
    assert direct.sum() >= 2
    assert (world.bill_crm_ref[direct] == "").all()
    assert not set(world.bill_tax_id[direct]) & set(world.acc_tax_id)
