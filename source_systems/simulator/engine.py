"""One business day of the simulated company, vectorised over every entity alive that day.

``Engine.step(d)`` advances the business by one UTC day: FX moves, subscriptions are invoiced, contracts
change state, opportunities progress and close, won deals become contracts, invoices are paid (or not),
leads arrive and are scored. Lifecycles are planned when an entity is born (an opportunity's stages, an
invoice's payments, a lead's score changes) and applied on their day, so each day only touches what
happens that day. Randomness comes from per-day streams (see ``rng``), which is what makes a day-by-day
simulation equal a one-shot one.

The step returns the records each system writes that day, still clean; ``dirt`` spoils them afterwards.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from source_systems.simulator import health
from source_systems.simulator.config import SimConfig
from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame
from source_systems.simulator.timefmt import crm_ts, day_of, epoch_seconds, iso_date, sqlite_ts
from source_systems.simulator.world import (
    CURRENCIES,
    FIRST_NAMES,
    LAST_NAMES,
    TITLES,
    World,
    products,
)

SIGNED, LIVE, PAUSED, CANCEL_REQ, ENDED = range(5)
STATUS = np.array(["signed", "live", "paused", "cancellation_requested", "ended"])
STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation"]
FREE_MAIL = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.de", "web.de"]
OTHER_DOMAINS = ["brightmetrics.io", "cloudnest.dev", "farmline.org", "quickparts.net", "medisys.eu"]
LEAD_SOURCES = ["Web", "Webinar", "Trade Show", "Partner", "Content Download"]
PAY_METHODS = ["wire", "ach", "card", "sepa"]
# Customer states used for behaviour (the truth recomputes states itself from the ledger).
C_PROSPECT, C_ONBOARDING, C_ACTIVE, C_PAUSED, C_CHURNED = range(5)
OPP_HAZARD = np.array([0.0025, 0.0005, 0.0010, 0.0003, 0.0012])  # per leaf account and day, by state
DIRECT_SIGN_HAZARD = 0.004
# Scripted lifecycles (day offsets from the start) so even a short simulation shows every transition:
# parent 2 goes live, pauses, resumes, gives notice, churns and is won back; parent 3 pauses and is
# terminated while paused. Scripted customers are left out of the random hazards.
SCRIPT_WINBACK_DAY = 50
SCRIPTED: dict[int, dict[int, tuple[int, int]]] = {
    # customer -> {day: (from status, to status)}; the notice period ends the contract on day 45
    2: {10: (1, 2), 15: (2, 1), 20: (1, 3)},
    3: {12: (1, 2), 30: (2, 4)},
}
SCRIPT_END_DAY = {2: 45}


@dataclass
class DayRecords:
    """What the systems receive on one day: new rows per table and in-place updates."""

    day: int
    inserts: dict[str, pl.DataFrame] = field(default_factory=dict)
    updates: dict[str, pl.DataFrame] = field(default_factory=dict)
    held_back_arrival: int | None = None  # when today's held-back payments are re-exported

    def add(self, kind: str, table: str, df: pl.DataFrame) -> None:
        target = self.inserts if kind == "insert" else self.updates
        if df.height == 0:
            return
        target[table] = pl.concat([target[table], df], how="diagonal_relaxed") if table in target else df


def _money(cents: np.ndarray) -> np.ndarray:
    return np.asarray(cents, dtype=np.int64) / 100.0


def _first_per(keys: np.ndarray, days: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The earliest of ``days`` for each of ``wanted`` among ``keys``."""
    first = pl.DataFrame({"k": keys, "d": days}).group_by("k").agg(pl.col("d").min())
    return pl.DataFrame({"k": wanted}).join(first, on="k", how="left")["d"].to_numpy()


class Engine:
    def __init__(self, config: SimConfig, world: World, state: State, month_close_business_day: int) -> None:
        self.cfg = config
        self.w = world
        self.s = state
        self.products = products()
        self.close_bd = month_close_business_day
        self.scale = config.scale
        leaves = np.flatnonzero(world.bill_account >= 0)
        self.leaf_bills = leaves  # bill units that are CRM leaf accounts
        self.bill_of_account = -np.ones(world.n_accounts, dtype=np.int64)
        self.bill_of_account[world.bill_account[leaves]] = leaves

    # ------------------------------------------------------------------ helpers
    def rng(self, d: int, purpose: str) -> np.random.Generator:
        return stream(self.cfg.seed, d, purpose)

    def date(self, d: int) -> dt.date:
        return day_of(self.cfg.start, d)

    def secs(self, d: int, purpose: str, n: int, lo: int = 6 * 3600, hi: int = 20 * 3600) -> np.ndarray:
        return np.sort(self.rng(d, purpose + ":sec").integers(lo, hi, size=n))

    def ts_sqlite(self, d: int | np.ndarray, sec: np.ndarray) -> pl.Series:
        return sqlite_ts(epoch_seconds(self.cfg.start, d, sec))

    def ts_crm(self, d: int | np.ndarray, sec: np.ndarray) -> pl.Series:
        return crm_ts(epoch_seconds(self.cfg.start, d, sec))

    def close_day_of_month_after(self, month_end: int) -> int:
        """Day index on which the month ending at ``month_end`` closes."""
        d, counted = month_end, 0
        while counted < self.close_bd:
            d += 1
            if self.date(d).weekday() < 5:
                counted += 1
        return d

    def customer_states(self) -> np.ndarray:
        """Behavioural state of every customer from today's contract statuses."""
        n = self.w.n_customers
        contracts = self.s.table("contracts")
        state = np.full(n, C_PROSPECT)
        if contracts.height:
            cust = contracts["customer"].to_numpy()
            st = contracts["status"].to_numpy()
            live = np.zeros(n, bool)
            paused = np.zeros(n, bool)
            signed = np.zeros(n, bool)
            live[cust[(st == LIVE) | (st == CANCEL_REQ)]] = True
            paused[cust[st == PAUSED]] = True
            signed[cust] = True
            ever = self._ever_active()
            state = np.where(signed, C_ONBOARDING, C_PROSPECT)
            state = np.where(ever, C_CHURNED, state)
            state = np.where(paused, C_PAUSED, state)
            state = np.where(live, C_ACTIVE, state)
        return state

    def _ever_active(self) -> np.ndarray:
        flags = self.s.table("customer_flags")
        ever = np.zeros(self.w.n_customers, bool)
        if flags.height:
            ever[flags.filter(pl.col("ever_active"))["customer"].to_numpy()] = True
        return ever

    # ------------------------------------------------------------------ the day
    def step(self, d: int) -> DayRecords:
        out = DayRecords(day=d)
        if d == 0:
            self._genesis(out)
        self._health(d)
        self._fx(d, out)
        self._monthly_invoicing(d, out)
        self._contract_transitions(d, out)
        self._opportunities(d, out)
        self._direct_signings(d, out)
        self._settlements(d, out)
        self._late_journal(d, out)
        self._leads(d, out)
        self._master_data_changes(d, out)
        self._close_day(d)
        self.s.last_day = d
        return out

    # ------------------------------------------------------------------ day 0
    def _genesis(self, out: DayRecords) -> None:
        """The systems as found on the first day: products, every CRM account and its contacts."""
        w, rng = self.w, self.rng(0, "genesis")
        p = self.products
        sec = self.secs(0, "products", len(p.product_id), 1, 3600)
        out.add(
            "insert",
            "erp.products",
            pl.DataFrame(
                {
                    "product_code": p.product_id,
                    "description": p.name,
                    "product_type": p.kind,
                    "list_price": _money(p.list_price_usd),
                    "updated_at": self.ts_sqlite(0, sec),
                    "is_deleted": 0,
                }
            ),
        )
        n = w.n_accounts
        sec = self.secs(0, "accounts", n, 1, 7200)
        created = -rng.integers(30, 2000, size=n)
        parent_ids = pl.Series([w.acc_crm_id[p] if p >= 0 else None for p in w.acc_parent], dtype=pl.String)
        out.add(
            "insert",
            "crm.accounts",
            pl.DataFrame(
                {
                    "Id": w.acc_crm_id,
                    "Name": w.acc_name,
                    "ParentId": parent_ids,
                    "BillingCountry": w.acc_country,
                    "TaxId": w.acc_tax_id,
                    "Website": np.char.add("https://www.", w.acc_domain.astype(str)),
                    "Phone": [f"+1-555-{i % 10000:04d}" for i in range(n)],
                    "Industry": "Enterprise",
                    "CreatedDate": self.ts_crm(created, sec),
                    "LastModifiedDate": self.ts_crm(0, sec),
                }
            ),
        )
        per = rng.integers(1, 4, size=n)
        acc = np.repeat(np.arange(n), per)
        self._new_contacts(0, acc, out, created=np.repeat(created, per))
        health.initial(self.s, self.cfg.seed, w.n_customers)
        self._installed_base(out)

    def _installed_base(self, out: DayRecords) -> None:
        """Customers before the first day: live contracts signed in the past, some already declining.

        The hierarchy cases (parents 0 and 1) and the scripted lifecycles (2 and 3) start as prospects.
        """
        w, rng = self.w, self.rng(0, "installed_base")
        candidates = np.arange(4, w.n_customers)
        chosen = candidates[rng.random(len(candidates)) < self.cfg.installed_base]
        bills = np.flatnonzero(np.isin(w.bill_customer, chosen))
        take = rng.random(len(bills)) < 0.5
        take[np.unique(w.bill_customer[bills], return_index=True)[1]] = True  # at least one per customer
        bills = bills[take]
        n = len(bills)
        if n == 0:
            return
        terms = self._draw_terms(rng, n) | {"services": np.zeros(n, dtype=np.int64)}
        signed = -rng.integers(40, 1000, size=n)
        live = signed + rng.integers(3, 22, size=n)
        ids = self._sign(0, bills, terms, out, history=(signed, live))
        c = self.s.table("contracts")
        self.s.replace(
            "contracts", c.with_columns(status=pl.when(pl.col("contract").is_in(ids)).then(LIVE).otherwise("status"))
        )
        self.s.append(
            "status_changes",
            frame("status_changes", contract=ids, day=live, from_status=[SIGNED] * n, to_status=[LIVE] * n),
        )
        sec = self.secs(0, "installed_live", n, 5 * 3600 + 1, 21 * 3600)
        then, now = self.ts_sqlite(live, sec), self.ts_sqlite(0, sec)
        cno = [f"K{k:07d}" for k in ids]
        out.add(
            "insert",
            "erp.contract_status_history",
            pl.DataFrame(
                {
                    "history_id": self.s.next_ids("contract_history", n),
                    "contract_no": cno,
                    "from_status": "signed",
                    "to_status": "live",
                    "changed_at": then,
                    "reason": "go_live",
                    "updated_at": now,
                }
            ),
        )
        out.add(
            "update",
            "erp.contracts",
            pl.DataFrame({"contract_no": cno, "status": "live", "status_changed_at": then, "updated_at": now}),
        )
        health.declining_already(self.s, rng, np.unique(w.bill_customer[bills]))

    def _new_contacts(self, d: int, acc: np.ndarray, out: DayRecords, created: np.ndarray | None = None) -> None:
        w, rng = self.w, self.rng(d, "contacts")
        m = len(acc)
        if m == 0:
            return
        ids = self.s.next_ids("contact", m)
        first = rng.choice(FIRST_NAMES, size=m)
        last = rng.choice(LAST_NAMES, size=m)
        email = [
            f"{f}.{ln}.{i}@{dom}".lower() for f, ln, i, dom in zip(first, last, ids, w.acc_domain[acc], strict=True)
        ]
        sec = self.secs(d, "contacts", m, 2, 80000)
        self.s.append("contacts", frame("contacts", contact=ids, account=acc, created_day=[d] * m))
        out.add(
            "insert",
            "crm.contacts",
            pl.DataFrame(
                {
                    "Id": [f"003{i:09d}" for i in ids],
                    "AccountId": w.acc_crm_id[acc],
                    "FirstName": first,
                    "LastName": last,
                    "Email": email,
                    "Phone": [f"+44-20-{i % 10**7:07d}" for i in ids * 7919],
                    "Title": rng.choice(TITLES, size=m),
                    "CreatedDate": self.ts_crm(created if created is not None else d, sec),
                    "LastModifiedDate": self.ts_crm(d, sec),
                }
            ),
        )

    # ------------------------------------------------------------------ money
    def _fx(self, d: int, out: DayRecords) -> None:
        rng = self.rng(d, "fx")
        if d > 0:
            shocks = rng.normal(0.0, 0.004, size=2)
            self.s.fx_micro = [1_000_000] + [
                round(r * float(np.exp(s))) for r, s in zip(self.s.fx_micro[1:], shocks, strict=True)
            ]
        self.s.append("fx", frame("fx", day=[d] * 3, currency=[0, 1, 2], rate_micro=self.s.fx_micro))
        out.add(
            "insert",
            "acct.fx_rates",
            pl.DataFrame(
                {
                    "rate_date": [self.date(d).isoformat()] * 3,
                    "currency": CURRENCIES,
                    "usd_per_unit": [f"{r / 1e6:.6f}" for r in self.s.fx_micro],
                }
            ),
        )

    def _monthly_invoicing(self, d: int, out: DayRecords) -> None:
        """Subscriptions are invoiced monthly in arrears on the 1st for contracts live at the end of the 1st's eve.

        The systems start with an invoice run on the first day, whatever its date: the installed base's month
        just ended (so the first month-start billing is not the first billing the pipeline ever sees).
        """
        if d != 0 and self.date(d).day != 1:
            return
        c = self.s.table("contracts").filter(pl.col("status").is_in([LIVE, CANCEL_REQ]))
        if c.height:
            self._issue_invoices(d, c, c["mrr"].to_numpy(), kind=0, out=out)

    def _issue_invoices(self, d: int, c: pl.DataFrame, amounts: np.ndarray, kind: int, out: DayRecords) -> None:
        rng = self.rng(d, f"invoices:{kind}")
        n = c.height
        ids = self.s.next_ids("invoice", n)
        due = d + 30
        cur = c["currency"].to_numpy()
        self.s.append(
            "invoices",
            frame(
                "invoices",
                invoice=ids,
                contract=c["contract"],
                bill=c["bill"],
                customer=c["customer"],
                currency=cur,
                amount=amounts,
                issue_day=[d] * n,
                due_day=[due] * n,
                kind=[kind] * n,
            ),
        )
        inv_no = np.array([f"INV-{i:07d}" for i in ids])
        out.add(
            "insert",
            "acct.invoices",
            pl.DataFrame(
                {
                    "invoice_no": inv_no,
                    "customer_id": self.w.bill_customer_no[c["bill"].to_numpy()],
                    "contract_ref": [f"K{k:07d}" for k in c["contract"].to_numpy()],
                    "invoice_date": [self.date(d).isoformat()] * n,
                    "due_date": [self.date(due).isoformat()] * n,
                    "currency": np.array(CURRENCIES)[cur],
                    "amount": amounts.astype(np.int64),
                    "invoice_type": "subscription" if kind == 0 else "services",
                    "po_number": [f"PO-{(i * 48271) % 10**6:06d}" for i in ids],
                }
            ),
        )
        self._journal(
            d,
            out,
            debit_acct="1200",
            credit_acct="4000" if kind == 0 else "4100",
            amounts=amounts,
            currency=cur,
            refs=inv_no,
            desc="Subscription invoice" if kind == 0 else "Services invoice",
        )
        self._revenue(d, d, cur, amounts)
        # Plan how each invoice gets settled.
        u = rng.random(n)
        pay1 = rng.integers(2, 30, size=n)
        late = rng.integers(5, 111, size=n)
        frac = rng.uniform(0.4, 0.7, size=n)
        rest_paid = rng.random(n) < 0.8
        rest_late = rng.integers(20, 151, size=n)
        credit_frac = rng.uniform(0.1, 0.4, size=n)
        held = rng.random(n) < self.cfg.dirt.held_back_payment
        # A customer in poor health pays late, partly or not at all (the branches between 0.70 and 0.91).
        troubled = rng.random(n) < health.troubled_invoice(health.current(self.s)[c["customer"].to_numpy()])
        u = np.where(troubled, 0.70 + u * 0.21, u)
        rows: list[tuple[int, int, int, int, bool]] = []
        for i in range(n):  # a handful of branches per invoice; the draws above are vectorised
            amt = int(amounts[i])
            if u[i] < 0.70:
                rows.append((d + int(pay1[i]), int(ids[i]), 0, amt, bool(held[i])))
            elif u[i] < 0.83:
                rows.append((due + int(late[i]), int(ids[i]), 0, amt, False))
            elif u[i] < 0.90:
                part = int(round(amt * frac[i], -2))
                rows.append((d + int(pay1[i]), int(ids[i]), 0, part, False))
                if rest_paid[i]:
                    rows.append((due + int(rest_late[i]), int(ids[i]), 0, amt - part, False))
            elif u[i] < 0.91:
                continue  # never paid
            elif u[i] < 0.95:
                credit = int(round(amt * credit_frac[i], -2))
                cday = d + 2 + int(pay1[i]) % 9
                rows.append((cday, int(ids[i]), 1, credit, False))
                rows.append((cday + 1 + int(pay1[i]) % 15, int(ids[i]), 0, amt - credit, False))
            else:  # paid on time after all
                rows.append((d + int(pay1[i]), int(ids[i]), 0, amt, bool(held[i])))
        if rows:
            days, inv, kinds, amts, holds = (np.array(x) for x in zip(*rows, strict=True))
            self.s.append(
                "pending_settlements",
                frame(
                    "pending_settlements",
                    day=days,
                    invoice=inv,
                    kind=kinds,
                    amount=amts,
                    held_back=holds,
                    arrival=[-1] * len(days),
                    sec=rng.integers(7 * 3600, 19 * 3600, size=len(days)),
                ),
            )

    def _journal(
        self,
        d: int,
        out: DayRecords,
        debit_acct: str | np.ndarray,
        credit_acct: str | np.ndarray,
        amounts: np.ndarray,
        currency: np.ndarray,
        refs: np.ndarray,
        desc: str,
        posting_day: int | None = None,
    ) -> None:
        """Double entries: one journal per amount, a debit line and a credit line."""
        n = len(amounts)
        if n == 0:
            return
        ids = self.s.next_ids("journal", n)
        jno = np.repeat([f"JE-{i:07d}" for i in ids], 2)
        accounts = np.empty(2 * n, dtype=object)
        accounts[0::2] = debit_acct
        accounts[1::2] = credit_acct
        money = np.repeat(np.asarray(amounts, dtype=np.int64), 2)
        is_debit = np.tile([True, False], n)
        names = {
            "1000": "Cash",
            "1200": "Accounts receivable",
            "1300": "Accrued revenue",
            "4000": "Subscription revenue",
            "4100": "Services revenue",
            "4900": "Sales credits",
        }
        post = self.date(d if posting_day is None else posting_day).isoformat()
        out.add(
            "insert",
            "acct.journal_lines",
            pl.DataFrame(
                {
                    "journal_no": jno,
                    "line_no": np.tile([1, 2], n),
                    "posting_date": [post] * (2 * n),
                    "account": accounts.astype(str),
                    "account_name": [names[a] for a in accounts],
                    "debit": np.where(is_debit, money, 0),
                    "credit": np.where(is_debit, 0, money),
                    "currency": np.repeat(np.array(CURRENCIES)[currency], 2),
                    "reference": np.repeat(refs, 2),
                    "description": desc,
                }
            ),
        )

    def _revenue(self, day: int, known: int, currency: np.ndarray, amounts: np.ndarray) -> None:
        n = len(amounts)
        self.s.append(
            "revenue", frame("revenue", day=[day] * n, known_day=[known] * n, currency=currency, amount=amounts)
        )

    def _settlements(self, d: int, out: DayRecords) -> None:
        due = self.s.take_pending("pending_settlements", d)
        if due.height == 0:
            return
        due = due.sort("sec", "invoice", "kind")
        inv = self.s.table("invoices")
        idx = due["invoice"].to_numpy() - 1  # invoice ids are 1-based and dense
        cur = inv["currency"].to_numpy()[idx]
        bill = inv["bill"].to_numpy()[idx]
        inv_no = np.array([f"INV-{i:07d}" for i in due["invoice"].to_numpy()])
        amounts = due["amount"].to_numpy()
        kinds = due["kind"].to_numpy()
        held = due["held_back"].to_numpy()
        pay = kinds == 0
        known = np.full(due.height, d)
        if (held & pay).any():
            out.held_back_arrival = d + int(self.rng(d, "v2").integers(1, 4))
            known[held & pay] = out.held_back_arrival
        self.s.append(
            "settlements",
            frame(
                "settlements",
                invoice=due["invoice"],
                day=[d] * due.height,
                amount=amounts,
                currency=cur,
                kind=kinds,
                known_day=known,
            ),
        )
        rng = self.rng(d, "payments")
        if pay.any():
            ids = self.s.next_ids("payment", int(pay.sum()))
            out.add(
                "insert",
                "acct.payments",
                pl.DataFrame(
                    {
                        "payment_no": [f"PAY-{i:07d}" for i in ids],
                        "invoice_no": inv_no[pay],
                        "customer_id": self.w.bill_customer_no[bill[pay]],
                        "payment_date": self.date(d).isoformat(),
                        "currency": np.array(CURRENCIES)[cur[pay]],
                        "amount": amounts[pay],
                        "method": rng.choice(PAY_METHODS, size=int(pay.sum())),
                        "_held_back": held[pay],
                    }
                ),
            )
            self._journal(d, out, "1000", "1200", amounts[pay], cur[pay], inv_no[pay], "Customer payment")
        cm = ~pay
        if cm.any():
            ids = self.s.next_ids("credit_memo", int(cm.sum()))
            out.add(
                "insert",
                "acct.credit_memos",
                pl.DataFrame(
                    {
                        "memo_no": [f"CM-{i:07d}" for i in ids],
                        "invoice_no": inv_no[cm],
                        "customer_id": self.w.bill_customer_no[bill[cm]],
                        "memo_date": self.date(d).isoformat(),
                        "currency": np.array(CURRENCIES)[cur[cm]],
                        "amount": amounts[cm],
                        "reason": rng.choice(["service credit", "billing error", "goodwill"], size=int(cm.sum())),
                    }
                ),
            )
            self._journal(d, out, "4900", "1200", amounts[cm], cur[cm], inv_no[cm], "Credit memo")
            self._revenue(d, d, cur[cm], -amounts[cm])

    def _late_journal(self, d: int, out: DayRecords) -> None:
        """Adjusting entries for a closed month arrive after its close, dated the month's last day."""
        date = self.date(d)
        if date.day == calendar.monthrange(date.year, date.month)[1]:
            rng = self.rng(d, "late_gl")
            close = self.close_day_of_month_after(d)
            picks = np.flatnonzero(rng.random(3) < self.cfg.dirt.late_journal)
            if len(picks):
                units = rng.integers(-3000, 8000, size=len(picks))
                units = np.where(units == 0, 500, units)
                self.s.append(
                    "pending_late_gl",
                    frame(
                        "pending_late_gl",
                        day=close + rng.integers(1, 9, size=len(picks)),
                        posting_day=[d] * len(picks),
                        currency=picks,
                        amount=units * 100,
                    ),
                )
        late = self.s.take_pending("pending_late_gl", d)
        for row in late.sort("posting_day", "currency").iter_rows(named=True):
            amt = np.array([abs(row["amount"])])
            cur = np.array([row["currency"]])
            debit, credit = ("1300", "4000") if row["amount"] > 0 else ("4000", "1300")
            self._journal(
                d,
                out,
                debit,
                credit,
                amt,
                cur,
                np.array(["ADJ-ACCRUAL"]),
                "Late revenue accrual adjustment",
                posting_day=row["posting_day"],
            )
            self._revenue(row["posting_day"], d, cur, np.array([row["amount"]]))

    # ------------------------------------------------------------------ contracts
    def _contract_transitions(self, d: int, out: DayRecords) -> None:
        c = self.s.table("contracts")
        if c.height == 0:
            return
        rng = self.rng(d, "contracts")
        st = c["status"].to_numpy().copy()
        old = st.copy()
        end_day = c["end_day"].to_numpy().copy()
        signed_today = c["signed_day"].to_numpy() == d
        go_live = (st == SIGNED) & (c["live_day"].to_numpy() == d)
        ends = (st == CANCEL_REQ) & (end_day == d)
        st[go_live] = LIVE
        st[ends] = ENDED
        free = ~(go_live | ends | signed_today)
        scripted = np.isin(c["customer"].to_numpy(), list(SCRIPTED))
        script_hit = np.zeros(len(st), bool)
        for cust, plan in SCRIPTED.items():
            if d in plan:
                src, dst = plan[d]
                hit = free & (c["customer"].to_numpy() == cust) & (old == src)
                st[hit] = dst
                if dst == CANCEL_REQ:
                    end_day[hit] = SCRIPT_END_DAY[cust]
                script_hit |= hit
        free &= ~scripted
        u = rng.random(len(st))
        notice = rng.integers(30, 91, size=len(st))
        # What happens to a contract follows its customer's latent health (simulator/health.py).
        h = health.current(self.s)[c["customer"].to_numpy()]
        p_pause, p_cancel = health.pause_hazard(h), health.cancel_hazard(h)
        p_resume, p_stop = health.resume_chance(h), health.terminate_chance(h)
        silent = free & (old == LIVE) & (rng.random(len(st)) < health.SILENT_CANCEL)
        pause = free & (old == LIVE) & ~silent & (u < p_pause)
        cancel = free & (old == LIVE) & ((u >= p_pause) & (u < p_pause + p_cancel) | silent)
        resume = free & (old == PAUSED) & (u < p_resume)
        stop = free & (old == PAUSED) & (u >= p_resume) & (u < p_resume + p_stop)
        restarted = go_live & ~np.isin(self.customer_states()[c["customer"].to_numpy()], [C_ACTIVE, C_PAUSED])
        health.restart(self.s, self.cfg.seed, np.unique(c["customer"].to_numpy()[restarted]))
        self._churn_causes(d, c["contract"].to_numpy(), st, cancel, stop, silent, script_hit)
        st[pause] = PAUSED
        st[cancel] = CANCEL_REQ
        end_day[cancel] = d + notice[cancel]
        st[resume] = LIVE
        st[stop] = ENDED
        changed = st != old
        if not changed.any():
            return
        reason = np.full(len(st), "", dtype=object)
        reason[go_live], reason[ends], reason[pause] = "go_live", "notice_period_over", "customer_pause"
        reason[cancel], reason[resume], reason[stop] = "cancellation_request", "resumed", "terminated"
        for code, why in (
            (PAUSED, "customer_pause"),
            (LIVE, "resumed"),
            (CANCEL_REQ, "cancellation_request"),
            (ENDED, "terminated"),
        ):
            reason[script_hit & (st == code)] = why
        self.s.replace("contracts", c.with_columns(status=pl.Series(st), end_day=pl.Series(end_day)))
        idx = np.flatnonzero(changed)
        self._status_rows(
            d, c["contract"].to_numpy()[idx], old[idx], st[idx], reason[idx].astype(str), end_day[idx], out
        )
        # A services fee is invoiced once, on go-live.
        svc = c.filter(pl.Series(go_live) & (pl.col("services") > 0))
        if svc.height:
            self._issue_invoices(d, svc, svc["services"].to_numpy(), kind=1, out=out)

    def _churn_causes(
        self,
        d: int,
        contract: np.ndarray,
        st: np.ndarray,
        cancel: np.ndarray,
        stop: np.ndarray,
        silent: np.ndarray,
        script_hit: np.ndarray,
    ) -> None:
        """Why each cancellation request or termination happened, for the truth (health.CAUSES)."""
        scripted = script_hit & np.isin(st, [CANCEL_REQ, ENDED])
        hit = cancel | stop | scripted
        if not hit.any():
            return
        cause = np.where(scripted, health.CAUSE_SCRIPTED, np.where(silent, health.CAUSE_SILENT, health.CAUSE_HEALTH))
        to_status = np.where(cancel, CANCEL_REQ, np.where(stop, ENDED, st))
        self.s.append(
            "churn_causes",
            frame(
                "churn_causes",
                contract=contract[hit],
                day=[d] * int(hit.sum()),
                to_status=to_status[hit],
                cause=cause[hit],
            ),
        )

    def _health(self, d: int) -> None:
        """Health moves before anything else happens on the day; declines start under contract only."""
        states = self.customer_states()
        health.step(self.s, self.cfg.seed, d, np.isin(states, [C_ACTIVE, C_PAUSED]))

    def _status_rows(
        self,
        d: int,
        contract: np.ndarray,
        old: np.ndarray,
        new: np.ndarray,
        reason: np.ndarray,
        end_day: np.ndarray,
        out: DayRecords,
    ) -> None:
        n = len(contract)
        self.s.append(
            "status_changes", frame("status_changes", contract=contract, day=[d] * n, from_status=old, to_status=new)
        )
        sec = self.secs(d, f"status:{n}", n)
        ts = self.ts_sqlite(d, sec)
        hist_ids = self.s.next_ids("contract_history", n)
        cno = [f"K{k:07d}" for k in contract]
        out.add(
            "insert",
            "erp.contract_status_history",
            pl.DataFrame(
                {
                    "history_id": hist_ids,
                    "contract_no": cno,
                    "from_status": pl.Series([STATUS[o] if o >= 0 else None for o in old], dtype=pl.String),
                    "to_status": STATUS[new],
                    "changed_at": ts,
                    "reason": reason,
                    "updated_at": ts,
                }
            ),
        )
        end_on = [self.date(int(e)).isoformat() if e >= 0 else None for e in end_day]
        out.add(
            "update",
            "erp.contracts",
            pl.DataFrame(
                {
                    "contract_no": cno,
                    "status": STATUS[new],
                    "status_changed_at": ts,
                    "end_on": pl.Series(end_on, dtype=pl.String),
                    "updated_at": ts,
                }
            ),
        )

    def _sign(
        self,
        d: int,
        bills: np.ndarray,
        terms: dict[str, np.ndarray],
        out: DayRecords,
        history: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """New contracts (with their bill-to entity on first purchase and a sales order); their ids.

        ``history`` gives the days of signing and go-live of contracts signed before the first day (the
        installed base, as the systems hold it on day 0): their rows carry those dates, and day 0's
        modification time.
        """
        n = len(bills)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng = self.rng(d, "sign")
        w = self.w
        created = self.s.table("billto_created")
        known = set(created["bill"].to_list())
        new_bills = sorted({int(b) for b in bills} - known)
        if new_bills:
            nb = np.array(new_bills)
            self.s.append("billto_created", frame("billto_created", bill=nb, day=[d] * len(nb)))
            first_day = np.full(len(nb), d) if history is None else _first_per(bills, history[0], nb)
            sec = self.secs(d, "billto", len(nb), 3600, 5 * 3600)
            out.add(
                "insert",
                "erp.customers",
                pl.DataFrame(
                    {
                        "customer_no": w.bill_customer_no[nb],
                        "customer_name": w.bill_name[nb],
                        "country": w.bill_country[nb],
                        "tax_number": pl.Series([t or None for t in w.bill_tax_id[nb]], dtype=pl.String),
                        "crm_account_ref": pl.Series([r or None for r in w.bill_crm_ref[nb]], dtype=pl.String),
                        "currency": np.array(CURRENCIES)[w.bill_currency[nb]],
                        "credit_limit": 50000.0,
                        "_name_variant": w.bill_name_variant[nb],
                        "created_on": iso_date(self.cfg.start, first_day),
                        "updated_at": self.ts_sqlite(d, sec),
                        "is_deleted": 0,
                    }
                ),
            )
        ids = self.s.next_ids("contract", n)
        live_day = d + rng.integers(3, 22, size=n)
        live_day[np.isin(w.bill_customer[bills], list(SCRIPTED))] = d + 3
        signed = np.full(n, d)
        if history is not None:
            signed, live_day = history
        cur = w.bill_currency[bills]
        tcv = terms["mrr"] * terms["term"] + terms["services"]
        self.s.append(
            "contracts",
            frame(
                "contracts",
                contract=ids,
                bill=bills,
                customer=w.bill_customer[bills],
                currency=cur,
                product=terms["product"],
                services_product=terms["services_product"],
                mrr=terms["mrr"],
                services=terms["services"],
                term=terms["term"],
                tcv=tcv,
                signed_day=signed,
                live_day=live_day,
                end_day=[-1] * n,
                status=[SIGNED] * n,
            ),
        )
        sec = self.secs(d, "contracts", n, 5 * 3600 + 1, 21 * 3600)
        ts = self.ts_sqlite(d, sec)
        then = ts if history is None else self.ts_sqlite(signed, sec)  # when it was signed
        p = self.products
        cno = [f"K{k:07d}" for k in ids]
        out.add(
            "insert",
            "erp.contracts",
            pl.DataFrame(
                {
                    "contract_no": cno,
                    "customer_no": w.bill_customer_no[bills],
                    "product_code": p.product_id[terms["product"]],
                    "currency": np.array(CURRENCIES)[cur],
                    "monthly_amount": _money(terms["mrr"]),
                    "total_value": _money(tcv),
                    "services_amount": _money(terms["services"]),
                    "term_months": terms["term"],
                    "signed_on": iso_date(self.cfg.start, signed),
                    "go_live_on": iso_date(self.cfg.start, live_day),
                    "status": "signed",
                    "status_changed_at": then,
                    "end_on": pl.Series([None] * n, dtype=pl.String),
                    "created_at": then,
                    "updated_at": ts,
                    "is_deleted": 0,
                }
            ),
        )
        self._status_rows_signed(d, ids, sec, out, signed)
        # A sales order per contract: the subscription line and, when sold, the services line.
        order_ids = self.s.next_ids("order", n)
        ono = [f"SO{o:07d}" for o in order_ids]
        out.add(
            "insert",
            "erp.sales_orders",
            pl.DataFrame(
                {
                    "order_no": ono,
                    "customer_no": w.bill_customer_no[bills],
                    "contract_no": cno,
                    "order_date": iso_date(self.cfg.start, signed),
                    "currency": np.array(CURRENCIES)[cur],
                    "total_amount": _money(terms["mrr"] + terms["services"]),
                    "created_at": then,
                    "updated_at": ts,
                    "is_deleted": 0,
                }
            ),
        )
        has_svc = terms["services"] > 0
        line_order = np.concatenate([np.arange(n), np.flatnonzero(has_svc)])
        order = np.argsort(line_order, kind="stable")
        line_order = line_order[order]
        is_svc = np.concatenate([np.zeros(n, bool), np.ones(int(has_svc.sum()), bool)])[order]
        prod = np.where(is_svc, terms["services_product"][line_order], terms["product"][line_order])
        price = np.where(is_svc, terms["services"][line_order], terms["mrr"][line_order])
        line_ids = self.s.next_ids("order_line", len(line_order))
        out.add(
            "insert",
            "erp.sales_order_lines",
            pl.DataFrame(
                {
                    "line_id": line_ids,
                    "order_no": np.array(ono)[line_order],
                    "line_no": np.where(is_svc, 2, 1),
                    "product_code": p.product_id[prod],
                    "quantity": 1,
                    "unit_price": _money(price),
                    "line_amount": _money(price),
                    "updated_at": ts.to_numpy()[line_order],
                }
            ),
        )
        return ids

    def _status_rows_signed(
        self, d: int, ids: np.ndarray, sec: np.ndarray, out: DayRecords, signed: np.ndarray
    ) -> None:
        n = len(ids)
        self.s.append(
            "status_changes",
            frame("status_changes", contract=ids, day=signed, from_status=[-1] * n, to_status=[SIGNED] * n),
        )
        ts = self.ts_sqlite(d, sec)
        then = self.ts_sqlite(signed, sec)
        out.add(
            "insert",
            "erp.contract_status_history",
            pl.DataFrame(
                {
                    "history_id": self.s.next_ids("contract_history", n),
                    "contract_no": [f"K{k:07d}" for k in ids],
                    "from_status": pl.Series([None] * n, dtype=pl.String),
                    "to_status": "signed",
                    "changed_at": then,
                    "reason": "signed",
                    "updated_at": ts,
                }
            ),
        )

    def _draw_terms(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        tier = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
        lo = np.array([500, 2000, 8000])[tier]
        hi = np.array([2000, 8000, 40000])[tier]
        mrr_units = rng.integers(lo, hi)
        has_services = rng.random(n) < 0.4
        services = np.where(has_services, rng.integers(10, 200, size=n) * 100, 0) * 100
        return {
            "product": tier,
            "services_product": rng.integers(3, 6, size=n),
            "mrr": mrr_units * 100,
            "term": rng.choice([12, 24, 36], size=n, p=[0.5, 0.3, 0.2]),
            "services": services,
        }

    def _direct_signings(self, d: int, out: DayRecords) -> None:
        """ERP-only customers buy without a CRM opportunity (a reseller deal, a web order)."""
        w = self.w
        direct_bills = np.flatnonzero(w.bill_account < 0)
        states = self.customer_states()
        prospects = direct_bills[states[w.bill_customer[direct_bills]] == C_PROSPECT]
        rng = self.rng(d, "direct")
        u = rng.random(len(direct_bills))
        signing = prospects[u[: len(prospects)] < DIRECT_SIGN_HAZARD]
        if len(signing):
            self._sign(d, signing, self._draw_terms(rng, len(signing)), out)

    # ------------------------------------------------------------------ opportunities
    def _opportunities(self, d: int, out: DayRecords) -> None:
        w, rng = self.w, self.rng(d, "opps")
        # 1. stage moves planned for today
        ev = self.s.take_pending("pending_opp_stages", d).sort("sec", "opp")
        if ev.height:
            ids = self.s.next_ids("opp_history", ev.height)
            opp_ids = [f"006{o:09d}" for o in ev["opp"].to_numpy()]
            ts = self.ts_crm(d, ev["sec"].to_numpy())
            out.add(
                "insert",
                "crm.opportunity_history",
                pl.DataFrame(
                    {
                        "Id": [f"008{i:09d}" for i in ids],
                        "OpportunityId": opp_ids,
                        "Field": "StageName",
                        "OldValue": ev["old"],
                        "NewValue": ev["new"],
                        "CreatedDate": ts,
                    }
                ),
            )
            closed = ev["new"].is_in(["Closed Won", "Closed Lost"]).to_numpy()
            won = (ev["new"] == "Closed Won").to_numpy()
            out.add(
                "update",
                "crm.opportunities",
                pl.DataFrame(
                    {
                        "Id": opp_ids,
                        "StageName": ev["new"],
                        "IsClosed": closed,
                        "IsWon": won,
                        "LastModifiedDate": ts,
                    }
                ),
            )
            if closed.any():
                self.s.append(
                    "opp_closes",
                    frame("opp_closes", opp=ev["opp"].to_numpy()[closed], day=[d] * int(closed.sum()), won=won[closed]),
                )
            if won.any():
                opps = self.s.table("opps")
                rows = opps[ev["opp"].to_numpy()[won] - 1]
                terms = {k: rows[k].to_numpy() for k in ("product", "services_product", "mrr", "services", "term")}
                self._sign(d, self.bill_of_account[rows["account"].to_numpy()], terms, out)
        # 2. new opportunities, by the state of the customer each leaf account belongs to
        states = self.customer_states()
        leaf_acc = w.bill_account[self.leaf_bills]
        hazard = OPP_HAZARD[states[w.acc_customer[leaf_acc]]]
        hazard[np.isin(w.acc_customer[leaf_acc], list(SCRIPTED))] = 0.0
        new_acc = leaf_acc[rng.random(len(leaf_acc)) < hazard]
        if d == 0:
            new_acc = np.concatenate([new_acc, self._scheduled()[0]])
        n = len(new_acc)
        if n == 0:
            return
        terms = self._draw_terms(rng, n)
        ids = self.s.next_ids("opp", n)
        cur = w.bill_currency[self.bill_of_account[new_acc]]
        amount = terms["mrr"] * terms["term"] + terms["services"]
        won = rng.random(n) < 0.35
        n_mid = np.where(won, 3, rng.integers(0, 4, size=n))
        gaps = rng.integers(3, 21, size=(n, 4))
        sec = self.secs(d, "opps", n)
        scheduled = np.zeros(n, bool)
        if d == 0:
            k = len(self._scheduled()[1])
            scheduled[n - k :] = True
            won[scheduled] = True
            n_mid[scheduled] = 0
            gaps[scheduled, 0] = self._scheduled()[1]
        close_day = np.full(n, d)
        pend: list[tuple[int, int, str, str, int]] = []
        for i in range(n):
            day, prev = d, STAGES[0]
            for j in range(int(n_mid[i])):
                day += int(gaps[i, j])
                pend.append((day, int(ids[i]), prev, STAGES[j + 1], int(sec[i])))
                prev = STAGES[j + 1]
            day += int(gaps[i, 3]) if n_mid[i] else int(gaps[i, 0])
            pend.append((day, int(ids[i]), prev, "Closed Won" if won[i] else "Closed Lost", int(sec[i])))
            close_day[i] = day
        self.s.append(
            "opps",
            frame(
                "opps",
                opp=ids,
                account=new_acc,
                currency=cur,
                amount=amount,
                created_day=[d] * n,
                close_day=close_day,
                won=won,
                **{k: terms[k] for k in ("product", "services_product", "mrr", "services", "term")},
            ),
        )
        days, oid, old, new, psec = zip(*pend, strict=True)
        self.s.append("pending_opp_stages", frame("pending_opp_stages", day=days, opp=oid, old=old, new=new, sec=psec))
        ts = self.ts_crm(d, sec)
        opp_ids = [f"006{o:09d}" for o in ids]
        out.add(
            "insert",
            "crm.opportunities",
            pl.DataFrame(
                {
                    "Id": opp_ids,
                    "AccountId": w.acc_crm_id[new_acc],
                    "Name": [
                        f"{nm} - {self.products.name[p]}"
                        for nm, p in zip(w.acc_name[new_acc], terms["product"], strict=True)
                    ],
                    "StageName": STAGES[0],
                    "Amount": _money(amount),
                    "CurrencyIsoCode": np.array(CURRENCIES)[cur],
                    "CloseDate": iso_date(self.cfg.start, close_day),
                    "IsClosed": False,
                    "IsWon": False,
                    "CreatedDate": ts,
                    "LastModifiedDate": ts,
                }
            ),
        )
        hist = self.s.next_ids("opp_history", n)
        out.add(
            "insert",
            "crm.opportunity_history",
            pl.DataFrame(
                {
                    "Id": [f"008{i:09d}" for i in hist],
                    "OpportunityId": opp_ids,
                    "Field": "StageName",
                    "OldValue": pl.Series([None] * n, dtype=pl.String),
                    "NewValue": STAGES[0],
                    "CreatedDate": ts,
                }
            ),
        )

    def _leaves_of(self, customer: int) -> np.ndarray:
        w = self.w
        return w.bill_account[self.leaf_bills][w.bill_customer[self.leaf_bills] == customer]

    def _scheduled(self) -> tuple[np.ndarray, np.ndarray]:
        """Deals opened on day 0 and won on a fixed day: the hierarchy cases and the scripted lifecycles.

        13 deals across parent 0's leaves; one per division of parent 1; parent 2 signs on day 1 and wins
        back on day 50; parent 3 signs on day 2.
        """
        leaves0, leaves1 = self._leaves_of(0), self._leaves_of(1)
        accounts = np.concatenate(
            [
                leaves0[np.arange(13) % len(leaves0)],
                leaves1,
                self._leaves_of(2)[:1],
                self._leaves_of(2)[:1],
                self._leaves_of(3)[:1],
            ]
        )
        close = np.concatenate([2 + np.arange(13) % 12, 3 + np.arange(len(leaves1)), [1, SCRIPT_WINBACK_DAY, 2]])
        return accounts, close

    # ------------------------------------------------------------------ marketing
    def _leads(self, d: int, out: DayRecords) -> None:
        rng = self.rng(d, "leads")
        # 1. score and status changes planned for today
        ev = self.s.take_pending("pending_lead_events", d).sort("sec", "lead", "field")
        if ev.height:
            self._lead_events(d, ev, out)
        # 2. new leads
        rate = 300 * self.scale
        if self.cfg.lead_spike_date == self.date(d):
            rate *= self.cfg.lead_spike_factor  # a campaign day
        n = int(rng.poisson(rate))
        if n == 0:
            return
        persons = self.s.table("persons").filter(pl.col("created_day") >= d - 60)
        self.s.replace("persons", persons)
        reuse = (rng.random(n) < 0.15) & (persons.height > 0)
        n_new = int((~reuse).sum())
        pid = self.s.next_ids("person", n_new)
        first = rng.choice(FIRST_NAMES, size=n_new)
        last = rng.choice(LAST_NAMES, size=n_new)
        kind = rng.random(n_new)
        cust = rng.integers(0, self.w.n_parents, size=n_new)
        acc_dom = self.w.acc_domain[self.w.cust_top_account[cust]]
        domain = np.where(
            kind < 0.5,
            acc_dom,
            np.where(kind < 0.6, rng.choice(OTHER_DOMAINS, size=n_new), rng.choice(FREE_MAIL, size=n_new)),
        )
        company = np.where(kind < 0.5, self.w.cust_name[cust], "")
        emails = [f"{f}.{ln}.{p}@{dm}".lower() for f, ln, p, dm in zip(first, last, pid, domain, strict=True)]
        new_people = frame(
            "persons", person=pid, first=first, last=last, email=emails, company=company, created_day=[d] * n_new
        )
        self.s.append("persons", new_people)
        if reuse.any():
            picked = persons[rng.integers(0, persons.height, size=int(reuse.sum()))]
            people = pl.concat([new_people, picked])
            order = np.concatenate([np.flatnonzero(~reuse), np.flatnonzero(reuse)])
            people = people[np.argsort(order)]
        else:
            people = new_people
        lead = self.s.next_ids("lead", n)
        sec = self.secs(d, "leads", n, 60, 80000)
        email_dom = people["email"].str.split("@").list.get(1)
        threshold = 60
        free = email_dom.is_in(FREE_MAIL).to_numpy()
        score0 = np.clip((rng.beta(2.0, 3.2, size=n) * 100).astype(int), 0, 100)
        n_changes = rng.choice(4, size=n, p=[0.35, 0.35, 0.2, 0.1])
        gaps = rng.integers(1, 21, size=(n, 3))
        steps = rng.integers(-8, 31, size=(n, 3))
        form_fill = rng.random(n) < 0.5
        accept_u = rng.random(n)
        accept_gap = rng.integers(1, 15, size=n)
        self.s.append(
            "leads", frame("leads", lead=lead, person=people["person"], domain=email_dom, created_day=[d] * n)
        )
        self.s.append("lead_scores", frame("lead_scores", lead=lead, day=[d] * n, score=score0))
        status = np.where(form_fill, "MQL", "Open")
        pend: list[tuple[int, int, str, str, str, int]] = []
        for i in range(n):
            score, day = int(score0[i]), d
            qualify = d if (score >= threshold and not free[i]) else -1
            for j in range(int(n_changes[i])):
                day += int(gaps[i, j])
                new_score = int(min(100, max(0, score + int(steps[i, j]))))
                pend.append((day, int(lead[i]), "Score", str(score), str(new_score), int(sec[i])))
                score = new_score
                if qualify < 0 and score >= threshold and not free[i]:
                    qualify = day
            accept_day = -1
            if qualify >= 0 and accept_u[i] < 0.4:
                accept_day = qualify + int(accept_gap[i])
            elif form_fill[i] and accept_u[i] < 0.05:
                accept_day = d + int(accept_gap[i])
            if accept_day >= 0:
                pend.append((accept_day, int(lead[i]), "Status", str(status[i]), "SAL", int(sec[i]) + 1))
        if pend:
            ev_days, lid, fld, old, new, psec = zip(*pend, strict=True)
            self.s.append(
                "pending_lead_events",
                frame("pending_lead_events", day=ev_days, lead=lid, field=fld, old=old, new=new, sec=psec),
            )
        ts = self.ts_crm(d, sec)
        lead_ids = np.array([f"00Q{i:09d}" for i in lead])
        out.add(
            "insert",
            "crm.leads",
            pl.DataFrame(
                {
                    "Id": lead_ids,
                    "FirstName": people["first"],
                    "LastName": people["last"],
                    "Email": people["email"],
                    "Company": people["company"],
                    "Score": score0,
                    "Status": status,
                    "LeadSource": rng.choice(LEAD_SOURCES, size=n),
                    "CreatedDate": ts,
                    "LastModifiedDate": ts,
                }
            ),
        )
        # History as the CRM records it: the initial score and status, then the form fill's MQL stamp.
        fill = np.flatnonzero(form_fill)
        hist_lead = np.concatenate([lead_ids, lead_ids, lead_ids[fill]])
        hist_field = ["Score"] * n + ["Status"] * n + ["Status"] * len(fill)
        hist_old = [None] * (2 * n) + ["Open"] * len(fill)
        hist_new = [str(s) for s in score0] + ["Open"] * n + ["MQL"] * len(fill)
        hist_sec = np.concatenate([sec, sec, sec[fill]])
        order = np.argsort(hist_sec, kind="stable")
        hid = self.s.next_ids("lead_history", len(hist_lead))
        out.add(
            "insert",
            "crm.lead_history",
            pl.DataFrame(
                {
                    "Id": [f"017{i:09d}" for i in hid],
                    "LeadId": hist_lead[order],
                    "Field": np.array(hist_field)[order],
                    "OldValue": pl.Series([hist_old[i] for i in order], dtype=pl.String),
                    "NewValue": np.array(hist_new)[order],
                    "CreatedDate": self.ts_crm(d, hist_sec[order]),
                }
            ),
        )
        self._junk_leads(d, out)

    def _lead_events(self, d: int, ev: pl.DataFrame, out: DayRecords) -> None:
        lead = ev["lead"].to_numpy()
        lead_ids = [f"00Q{i:09d}" for i in lead]
        ts = self.ts_crm(d, ev["sec"].to_numpy())
        hid = self.s.next_ids("lead_history", ev.height)
        out.add(
            "insert",
            "crm.lead_history",
            pl.DataFrame(
                {
                    "Id": [f"017{i:09d}" for i in hid],
                    "LeadId": lead_ids,
                    "Field": ev["field"],
                    "OldValue": ev["old"],
                    "NewValue": ev["new"],
                    "CreatedDate": ts,
                }
            ),
        )
        is_score = (ev["field"] == "Score").to_numpy()
        out.add(
            "update",
            "crm.leads",
            pl.DataFrame(
                {
                    "Id": lead_ids,
                    "Score": pl.Series(
                        [int(v) if s else None for v, s in zip(ev["new"], is_score, strict=True)], dtype=pl.Int64
                    ),
                    "Status": pl.Series(
                        [None if s else v for v, s in zip(ev["new"], is_score, strict=True)], dtype=pl.String
                    ),
                    "LastModifiedDate": ts,
                }
            ),
        )
        if is_score.any():
            self.s.append(
                "lead_scores",
                frame(
                    "lead_scores",
                    lead=lead[is_score],
                    day=[d] * int(is_score.sum()),
                    score=ev.filter(pl.Series(is_score))["new"].cast(pl.Int64),
                ),
            )
        acc = ~is_score
        if acc.any():
            self.s.append("lead_accepts", frame("lead_accepts", lead=lead[acc], day=[d] * int(acc.sum())))

    def _junk_leads(self, d: int, out: DayRecords) -> None:
        """Bot form fills with unusable emails: not part of the business, the pipeline must quarantine them."""
        rng = self.rng(d, "junk")
        n = int(rng.binomial(max(1, int(300 * self.scale)), self.cfg.dirt.invalid_email))
        if n == 0:
            return
        lead = self.s.next_ids("lead", n)
        sec = self.secs(d, "junk", n, 60, 80000)
        ts = self.ts_crm(d, sec)
        bad = rng.choice(["asdf", "test@", "no-email", "john@@example.com", "@example.com", "n/a"], size=n)
        ids = [f"00Q{i:09d}" for i in lead]
        out.add(
            "insert",
            "crm.leads",
            pl.DataFrame(
                {
                    "Id": ids,
                    "FirstName": "Test",
                    "LastName": "Test",
                    "Email": bad,
                    "Company": "",
                    "Score": rng.integers(0, 100, size=n),
                    "Status": "MQL",
                    "LeadSource": "Web",
                    "CreatedDate": ts,
                    "LastModifiedDate": ts,
                    "_bogus": ["invalid_email"] * n,
                }
            ),
        )

    # ------------------------------------------------------------------ master data drift
    def _master_data_changes(self, d: int, out: DayRecords) -> None:
        """History that changes: phone numbers, contacts joining, credit limits."""
        if d == 0:
            return
        rng = self.rng(d, "masterdata")
        w = self.w
        k = int(rng.binomial(w.n_accounts, 0.0008))
        if k:
            acc = np.unique(rng.integers(0, w.n_accounts, size=k))
            sec = self.secs(d, "acc_upd", len(acc))
            out.add(
                "update",
                "crm.accounts",
                pl.DataFrame(
                    {
                        "Id": w.acc_crm_id[acc],
                        "Phone": [f"+1-555-{(a * 31 + d) % 10000:04d}" for a in acc],
                        "LastModifiedDate": self.ts_crm(d, sec),
                    }
                ),
            )
        self._new_contacts(d, rng.integers(0, w.n_accounts, size=int(rng.poisson(3 * self.scale))), out)
        created = self.s.table("billto_created")["bill"].to_numpy()
        k = int(rng.binomial(len(created), 0.002)) if len(created) else 0
        if k:
            bills = np.unique(rng.choice(created, size=k))
            sec = self.secs(d, "cust_upd", len(bills))
            out.add(
                "update",
                "erp.customers",
                pl.DataFrame(
                    {
                        "customer_no": w.bill_customer_no[bills],
                        "credit_limit": rng.integers(5, 50, size=len(bills)) * 10000.0,
                        "updated_at": self.ts_sqlite(d, sec),
                    }
                ),
            )

    # ------------------------------------------------------------------ end of day
    def _close_day(self, d: int) -> None:
        c = self.s.table("contracts")
        if c.height == 0:
            return
        live = c.filter(pl.col("status").is_in([LIVE, CANCEL_REQ]))["customer"].unique()
        flags = self.s.table("customer_flags")
        new = live.filter(~live.is_in(flags["customer"].implode()))
        if new.len():
            self.s.append(
                "customer_flags", frame("customer_flags", customer=new.sort(), ever_active=[True] * new.len())
            )
