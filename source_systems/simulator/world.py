"""The static world: organisations, their hierarchies, bill-to entities and products.

Generated once from (seed, scale) and regenerated on every load rather than stored, since it never
changes during a simulation. The two hierarchy cases the enterprise schema rule must handle are built in
on purpose: parent 0 holds 13 contracts across its divisions, parent 1 has five divisions that each
hold their own contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from source_systems.simulator.rng import stream

COUNTRIES = ["US", "GB", "DE", "FR", "NL", "IE", "ES", "CA", "AU"]
COUNTRY_WEIGHTS = [0.40, 0.15, 0.12, 0.10, 0.06, 0.04, 0.04, 0.05, 0.04]
CURRENCIES = ["USD", "EUR", "GBP"]
COUNTRY_CURRENCY = {"US": 0, "CA": 0, "AU": 0, "GB": 2, "DE": 1, "FR": 1, "NL": 1, "IE": 1, "ES": 1}
LEGAL_FORMS = {
    "US": ["Inc.", "Inc", "Corp.", "Corporation", "Co.", "Company", "LLC", "Incorporated"],
    "CA": ["Inc.", "Corp.", "Ltd."],
    "AU": ["Pty Ltd", "Ltd"],
    "GB": ["Ltd", "Limited", "PLC", "Ltd."],
    "IE": ["Ltd", "Limited"],
    "DE": ["GmbH", "AG"],
    "FR": ["SA"],
    "NL": ["B.V.", "BV"],
    "ES": ["S.L.", "SA"],
}
# How people type a country: the dirt the pipeline's ISO mapping must absorb.
COUNTRY_VARIANTS = {
    "US": ["USA", "United States", "U.S.", "united states of america"],
    "GB": ["UK", "United Kingdom", "Great Britain", "GBR"],
    "DE": ["Germany", "Deutschland", "DEU"],
    "FR": ["France", "FRA"],
    "NL": ["Netherlands", "Holland", "NLD"],
    "IE": ["Ireland", "IRL"],
    "ES": ["Spain", "España", "ESP"],
    "CA": ["Canada", "CAN"],
    "AU": ["Australia", "AUS"],
}

_PREFIX = [
    "North",
    "South",
    "East",
    "West",
    "Blue",
    "Red",
    "Green",
    "Silver",
    "Golden",
    "Iron",
    "Stone",
    "River",
    "Lake",
    "Summit",
    "Valley",
    "Harbor",
    "Bright",
    "Clear",
    "Swift",
    "Noble",
    "Prime",
    "Royal",
    "Grand",
    "Atlas",
    "Polar",
    "Solar",
    "Lunar",
    "Crystal",
    "Amber",
    "Cedar",
    "Oak",
    "Pine",
    "Maple",
    "Willow",
    "Eagle",
    "Falcon",
    "Hawk",
    "Orion",
    "Vega",
    "Nova",
]
_CORE = [
    "wind",
    "field",
    "bridge",
    "gate",
    "point",
    "crest",
    "ridge",
    "brook",
    "wood",
    "land",
    "stream",
    "light",
    "peak",
    "forge",
    "works",
    "haven",
    "port",
    "shore",
    "line",
    "path",
    "way",
    "star",
    "stone",
    "mark",
    "cast",
    "vale",
    "spring",
    "wave",
    "tide",
    "core",
    "sphere",
    "grid",
    "loop",
]
_INDUSTRY = [
    "Dynamics",
    "Systems",
    "Industries",
    "Holdings",
    "Group",
    "Partners",
    "Technologies",
    "Logistics",
    "Foods",
    "Energy",
    "Labs",
    "Networks",
    "Materials",
    "Ventures",
    "Brands",
]
_DIVISIONS = [
    "Healthcare",
    "Aviation",
    "Power",
    "Capital",
    "Digital",
    "Freight",
    "Retail",
    "Pharma",
    "Nutrition",
    "Mobility",
    "Security",
    "Media",
    "Chemicals",
    "Software",
    "Robotics",
    "Marine",
]
_REGIONS = ["EMEA", "Americas", "APAC", "North", "South", "East", "West", "Central", "Nordics", "Iberia"]
FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Paul",
    "Emily",
    "Steven",
    "Donna",
    "Andrew",
    "Michelle",
    "Joshua",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "Oliver",
    "Amelia",
    "Lukas",
    "Emma",
    "Hugo",
    "Chloe",
    "Lucas",
    "Lea",
    "Finn",
    "Sofia",
    "Liam",
    "Noah",
    "Mia",
    "Elena",
    "Pablo",
    "Lucia",
    "Jan",
    "Anna",
    "Tom",
    "Eva",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Dubois",
    "Bernard",
    "Moreau",
    "Laurent",
    "Jansen",
    "Visser",
    "Murphy",
    "Kelly",
    "Walsh",
    "Fernandez",
]
TITLES = ["CFO", "CTO", "VP Finance", "IT Director", "Procurement Manager", "Head of Operations", "CEO"]


@dataclass
class Products:
    product_id: np.ndarray  # str
    name: np.ndarray
    kind: np.ndarray  # subscription | services
    list_price_usd: np.ndarray  # cents


def products() -> Products:
    rows = [
        ("P-SUB-STARTER", "Platform Starter (monthly)", "subscription", 90_000),
        ("P-SUB-PRO", "Platform Professional (monthly)", "subscription", 450_000),
        ("P-SUB-ENT", "Platform Enterprise (monthly)", "subscription", 1_800_000),
        ("P-SVC-ONBOARD", "Onboarding package", "services", 500_000),
        ("P-SVC-TRAIN", "Training days", "services", 250_000),
        ("P-SVC-INTEG", "Integration project", "services", 1_500_000),
    ]
    ids, names, kinds, prices = zip(*rows, strict=True)
    return Products(np.array(ids), np.array(names), np.array(kinds), np.array(prices, dtype=np.int64))


@dataclass
class World:
    """Arrays indexed by CRM account (acc_*), billable unit (bill_*) and customer (cust_*)."""

    n_parents: int  # customers 0..n_parents-1 are CRM hierarchies
    n_direct: int  # customers n_parents.. are ERP-only, unknown to the CRM
    acc_crm_id: np.ndarray
    acc_parent: np.ndarray  # account index of the parent, -1 at the top
    acc_customer: np.ndarray  # customer index (the ultimate parent)
    acc_level: np.ndarray
    acc_name: np.ndarray
    acc_country: np.ndarray
    acc_tax_id: np.ndarray
    acc_domain: np.ndarray
    acc_is_leaf: np.ndarray
    bill_account: np.ndarray  # CRM account index of the bill-to unit, -1 for direct customers
    bill_customer: np.ndarray
    bill_customer_no: np.ndarray  # ERP key
    bill_name: np.ndarray  # as the ERP clerk typed it
    bill_name_variant: np.ndarray  # bool: typed differently from the CRM name
    bill_country: np.ndarray
    bill_currency: np.ndarray  # index into CURRENCIES
    bill_crm_ref: np.ndarray  # CRM id or "" when the ERP record carries none
    bill_tax_id: np.ndarray  # "" when missing
    cust_name: np.ndarray
    cust_top_account: np.ndarray  # -1 for direct customers

    @property
    def n_customers(self) -> int:
        return self.n_parents + self.n_direct

    @property
    def n_accounts(self) -> int:
        return len(self.acc_crm_id)

    @property
    def n_billable(self) -> int:
        return len(self.bill_customer)


def _tax_id(country: str, n: int) -> str:
    digits = f"{(n * 7919 + 104729) % 10**9:09d}"
    if country == "US":
        return f"{digits[:2]}-{digits[2:]}"
    return f"{country}{digits}"


def build_world(seed: int, scale: float) -> World:
    rng = stream(seed, -1, "world")
    n_parents = max(4, round(1000 * scale))
    n_direct = max(2, round(30 * scale))

    combos = len(_PREFIX) * len(_CORE) * len(_INDUSTRY)
    if n_parents + n_direct > combos:
        raise ValueError(f"scale {scale} needs more than {combos} distinct company names")
    pick = rng.choice(combos, size=n_parents + n_direct, replace=False)
    bases = []
    for p in pick:
        a, rest = divmod(int(p), len(_CORE) * len(_INDUSTRY))
        b, c = divmod(rest, len(_INDUSTRY))
        bases.append(f"{_PREFIX[a]}{_CORE[b]} {_INDUSTRY[c]}")
    countries = rng.choice(COUNTRIES, size=n_parents + n_direct, p=COUNTRY_WEIGHTS)
    shapes = rng.choice(4, size=n_parents, p=[0.45, 0.30, 0.20, 0.05])
    child_counts = rng.integers(1, 4, size=(n_parents, 4))

    acc_parent: list[int] = []
    acc_customer: list[int] = []
    acc_level: list[int] = []
    acc_name: list[str] = []
    acc_country: list[str] = []
    region_other = rng.random(size=(n_parents, 16))
    region_country = rng.choice(COUNTRIES, size=(n_parents, 16), p=COUNTRY_WEIGHTS)

    def add(parent: int, cust: int, level: int, name: str, country: str) -> int:
        acc_parent.append(parent)
        acc_customer.append(cust)
        acc_level.append(level)
        acc_name.append(name)
        acc_country.append(country)
        return len(acc_parent) - 1

    for i in range(n_parents):
        country = str(countries[i])
        form = LEGAL_FORMS[country][0]
        top = add(-1, i, 0, f"{bases[i]} {form}", country)
        divs = _DIVISIONS[(i * 5) % len(_DIVISIONS) :] + _DIVISIONS[: (i * 5) % len(_DIVISIONS)]
        k = 0

        def child_country(k: int, i: int = i, country: str = country) -> str:
            return str(region_country[i, k]) if region_other[i, k] < 0.3 else country

        if i == 0:  # 13 contracts across divisions: 4 divisions, regions, one sub-region level
            layout = [2, 3, 0, -2]
        elif i == 1:  # five divisions, each its own contract
            layout = [0, 0, 0, 0, 0]
        elif shapes[i] == 0:
            layout = []
        elif shapes[i] == 1:
            layout = [0] * int(child_counts[i, 0] + 1)
        elif shapes[i] == 2:
            layout = [int(c) for c in child_counts[i, : int(child_counts[i, 0]) % 2 + 2]]
        else:
            layout = [2, -2]
        for d, regions in enumerate(layout):
            div_name = f"{bases[i]} {divs[d]}"
            div = add(top, i, 1, div_name, country)
            if regions == -2:  # a region with two sub-regions below it: three levels deep
                reg = add(div, i, 2, f"{div_name} {_REGIONS[0]}", child_country(k))
                k += 1
                for s in range(2):
                    add(reg, i, 3, f"{div_name} {_REGIONS[0]} {_REGIONS[s + 4]}", child_country(k))
                    k += 1
            for r in range(max(regions, 0)):
                add(div, i, 2, f"{div_name} {_REGIONS[r]}", child_country(k))
                k += 1

    n_acc = len(acc_parent)
    parent_arr = np.array(acc_parent, dtype=np.int64)
    is_leaf = np.ones(n_acc, dtype=bool)
    is_leaf[parent_arr[parent_arr >= 0]] = False
    acc_country_arr = np.array(acc_country)
    acc_tax = np.array([_tax_id(c, n + seed) for n, c in enumerate(acc_country)])
    acc_domain = np.array([bases[c].lower().replace(" ", "") + ".com" for c in acc_customer])

    # Billable units: every CRM leaf account, then the direct customers.
    leaves = np.flatnonzero(is_leaf)
    n_bill = len(leaves) + n_direct
    bill_account = np.concatenate([leaves, -np.ones(n_direct, dtype=np.int64)])
    bill_customer = np.concatenate([np.array(acc_customer)[leaves], np.arange(n_parents, n_parents + n_direct)])
    bill_country = np.concatenate([acc_country_arr[leaves], countries[n_parents:]]).astype(str)
    plain_names = [_strip_form(acc_name[a]) for a in leaves] + list(bases[n_parents:])
    draws = rng.random(size=(n_bill, 4))
    forms = [LEGAL_FORMS[str(c)] for c in bill_country]
    bill_name = []
    variant = np.zeros(n_bill, dtype=bool)
    for b in range(n_bill):
        form = forms[b][int(draws[b, 0] * len(forms[b]))]
        name = f"{plain_names[b]} {form}"
        if draws[b, 1] < 0.25:
            name = name.upper()
        if b < len(leaves) and name != acc_name[int(bill_account[b])]:
            variant[b] = True
        bill_name.append(name)
    # Which identifiers the ERP record carries: a CRM reference, else often a tax id, else only the name.
    ref_draw = draws[:, 2]
    has_ref = (ref_draw < 0.5) & (bill_account >= 0)
    has_tax = (~has_ref & (draws[:, 3] < 0.6)) | (bill_account < 0)
    crm_ids = np.array([f"001{n + 1:09d}" for n in range(n_acc)])
    bill_crm_ref = np.where(has_ref, crm_ids[np.maximum(bill_account, 0)], "")
    direct_tax = np.array([_tax_id(str(c), 10**6 + n + seed) for n, c in enumerate(countries[n_parents:])])
    leaf_tax = acc_tax[leaves]
    bill_tax = np.where(has_tax, np.concatenate([leaf_tax, direct_tax]), "")
    bill_currency = np.array([COUNTRY_CURRENCY[str(c)] for c in bill_country], dtype=np.int64)

    top_of_customer = -np.ones(n_parents + n_direct, dtype=np.int64)
    tops = np.flatnonzero(parent_arr < 0)
    top_of_customer[np.array(acc_customer)[tops]] = tops
    cust_name = np.array(
        [acc_name[int(t)] if t >= 0 else bill_name[len(leaves) + i - n_parents] for i, t in enumerate(top_of_customer)]
    )
    return World(
        n_parents=n_parents,
        n_direct=n_direct,
        acc_crm_id=crm_ids,
        acc_parent=parent_arr,
        acc_customer=np.array(acc_customer, dtype=np.int64),
        acc_level=np.array(acc_level, dtype=np.int64),
        acc_name=np.array(acc_name),
        acc_country=acc_country_arr,
        acc_tax_id=acc_tax,
        acc_domain=acc_domain,
        acc_is_leaf=is_leaf,
        bill_account=bill_account,
        bill_customer=bill_customer,
        bill_customer_no=np.array([f"C{100001 + b}" for b in range(n_bill)]),
        bill_name=np.array(bill_name),
        bill_name_variant=variant,
        bill_country=bill_country,
        bill_currency=bill_currency,
        bill_crm_ref=bill_crm_ref,
        bill_tax_id=bill_tax,
        cust_name=cust_name,
        cust_top_account=top_of_customer,
    )


def _strip_form(name: str) -> str:
    for forms in LEGAL_FORMS.values():
        for form in forms:
            if name.endswith(" " + form):
                return name[: -len(form) - 1]
    return name
