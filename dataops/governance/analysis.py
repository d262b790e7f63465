"""What a statement reads, decided on its syntax tree with scopes, never by matching names in its text.

The gateway authorises what actually runs: the statement is parsed (sqlglot, DuckDB dialect), every table
reference is resolved with its scope (sqlglot's scope machinery: a name that refers to a CTE in scope is the
CTE, whatever it is called; any other reference is a published dataset or nothing), each dataset is
authorised for the role, and each real reference, and only those, is rewritten to the one file that may answer
the role (``"<file>"."<schema>"."<table>"``, the file's alias fresh for every query). The rewritten statement
is parsed and authorised again, from scratch, before it may run; anything the analysis does not understand is
refused (fail closed). The worker then checks DuckDB's own parse and plan of it (:mod:`.functions`).

Error messages name only what the caller typed or may read (docs/decisions/0023).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, ScopeType, traverse_scope

from dataops.governance.policy import Policy

MAX_NESTING = 64  # brackets inside brackets: deeper SQL is refused before any parser sees it
# Tokens in one statement: the analysis costs about 0.35 s of the gateway's own CPU at this size (decision 0023),
# and it runs outside the worker, so its size is bounded before it starts.
MAX_TOKENS = 10_000
GENERAL, RESTRICTED = "general", "restricted"
# Node types that have no place in one read-only query, wherever they appear in the tree.
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Command,
    exp.Pragma,
    exp.Set,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Use,
    exp.DDL,
    exp.DML,
    exp.Describe,
    exp.Summarize,
    exp.Show,
    exp.Into,
    exp.Placeholder,
    exp.Parameter,
    exp.SessionParameter,
    exp.Lock,
)
# The only table functions a query may call (DuckDB's own names are checked again in the worker).
TABLE_FUNCTIONS: tuple[type[exp.Expr], ...] = (exp.GenerateSeries,)


class Denied(PermissionError):
    """The gateway refused the query. ``outcome`` says what kind of refusal (``invalid``: it does not parse or
    bind; ``denied``: not allowed; ``braked``: a limit stopped it; ``error``: the gateway failed, closed);
    ``brake`` names the limit, if one did."""

    def __init__(self, reason: str, brake: str | None = None, outcome: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.brake = brake
        self.outcome = outcome or ("braked" if brake else "denied")


@dataclass(frozen=True)
class Dataset:
    """A published dataset as the gateway sees it: where its copies live and what it holds."""

    name: str  # schema.table, lower case
    classification: str
    pii_columns: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset({GENERAL})  # GENERAL (pseudonymised) and/or RESTRICTED (clear)
    columns: tuple[tuple[str, str], ...] = ()  # (name, DuckDB type)
    rows: int = 0  # for the scan limit (the files are written once: DuckDB's count is exact)

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass
class Analysis:
    """The statement to run, what it reads and from which file, and what the audit says it touched."""

    sql: str  # the rewritten statement, the only text that reaches DuckDB
    aliases: dict[str, str]  # file -> its alias in this query
    datasets: list[str]
    columns: list[str]
    tables: set[str]  # "alias.schema.table" that the plan may scan
    notes: list[str] = field(default_factory=list)


def precheck(sql: str, max_bytes: int) -> None:
    """Refusals that need no parser: size, NUL characters, nesting depth."""
    size = len(sql.encode(errors="replace"))
    if size > max_bytes:
        raise Denied(f"the statement is {size:,} bytes, above the {max_bytes:,} allowed", brake="statement_size")
    if "\x00" in sql:
        raise Denied("the statement contains a NUL character", outcome="invalid")
    if not sql.strip():
        raise Denied("the statement is empty", outcome="invalid")
    if nesting(sql) > MAX_NESTING:
        raise Denied(
            f"the statement nests brackets more than {MAX_NESTING} deep; flatten it (CTEs help)",
            brake="statement_nesting",
        )
    try:
        tokens = len(sqlglot.tokenize(sql, read="duckdb"))
    except SqlglotError as exc:
        raise Denied(f"the SQL does not parse: {_first_line(exc)}", outcome="invalid") from None
    if tokens > MAX_TOKENS:
        raise Denied(f"the statement has {tokens:,} tokens, above the {MAX_TOKENS:,} allowed", brake="statement_size")


def nesting(sql: str) -> int:
    """The deepest bracket nesting outside quotes and comments."""
    depth = deepest = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def parse(sql: str) -> exp.Query:
    """Exactly one plain query, or a refusal that says why."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as exc:
        raise Denied(f"the SQL does not parse: {_first_line(exc)}", outcome="invalid") from None
    except (RecursionError, ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise Denied(f"the SQL could not be analysed ({type(exc).__name__})", outcome="invalid") from None
    if len(statements) != 1:
        raise Denied(
            f"one statement per query: found {len(statements)} (nothing after a semicolon is run)",
            outcome="invalid",
        )
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise Denied(
            f"only SELECT queries are allowed through the gateway; this is {type(statement).__name__.upper()}",
        )
    for node in statement.walk():
        if isinstance(node, FORBIDDEN_NODES):
            if isinstance(node, exp.Placeholder | exp.Parameter | exp.SessionParameter):
                raise Denied("parameters cannot be bound through the gateway: write the values", outcome="invalid")
            raise Denied(f"{type(node).__name__.upper()} cannot be part of a query through the gateway")
    return statement


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@dataclass
class References:
    real: list[exp.Table]  # references to tables (to resolve, authorise and rewrite)
    ctes: list[exp.Table]  # references to a CTE in scope (never rewritten)
    functions: list[exp.Table]  # table functions in FROM


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalise_names(statement: exp.Expr) -> None:
    """Table, schema, CTE and table-alias names in lower case, as DuckDB compares them (ASCII letters only,
    quoted or not), so that scopes match a CTE the way DuckDB will. Column names and output names are left as
    typed: they name the result's columns."""
    for node in statement.find_all(exp.Table, exp.TableAlias):
        keys = ("this", "db", "catalog") if isinstance(node, exp.Table) else ("this",)
        for key in keys:
            identifier = node.args.get(key)
            if isinstance(identifier, exp.Identifier):
                identifier.set("this", identifier.name.translate(ASCII_LOWER))


def references(statement: exp.Query) -> References:
    """Every table reference in the tree, classified by its scope; a reference the scopes do not account for
    is refused."""
    normalise_names(statement)
    try:
        scopes = traverse_scope(statement)
    except (SqlglotError, RecursionError, ValueError, KeyError, AttributeError) as exc:
        raise Denied(f"the query's structure could not be analysed ({_first_line(exc)})", outcome="invalid") from None
    found = References([], [], [])
    classified: set[int] = set()
    for scope in scopes:
        for table in scope.tables:
            if id(table) in classified:
                continue
            kind = _classify(scope, table)
            if kind is not None:
                getattr(found, kind).append(table)
                classified.add(id(table))
    for table in statement.find_all(exp.Table):
        if id(table) not in classified:
            raise Denied(
                f"the table reference {table.sql('duckdb')[:80]} is in a place the gateway does not accept; "
                "select from datasets in FROM and JOIN"
            )
    return found


def _classify(scope: Scope, table: exp.Table) -> str | None:
    if not isinstance(table.this, exp.Identifier):
        return "functions"
    if any(source is table for source in scope.sources.values()):
        return "real"
    cte = scope.cte_sources.get(table.name)
    if (
        not table.args.get("db")
        and not table.args.get("catalog")
        and isinstance(cte, Scope)
        and cte.scope_type == ScopeType.CTE
        and scope.sources.get(table.alias_or_name) is cte
    ):
        return "ctes"
    return None


class Resolver:
    """Datasets by name for one role: resolution, authorisation and the file that answers."""

    def __init__(self, datasets: dict[str, Dataset], policy: Policy, role: str) -> None:
        self.datasets = datasets
        self.policy = policy
        self.role = role
        self.by_table: dict[str, list[str]] = {}
        for name in datasets:
            self.by_table.setdefault(name.split(".", 1)[1], []).append(name)

    def resolve(self, table: exp.Table) -> Dataset:
        if table.args.get("catalog"):
            raise Denied(
                f"name datasets as schema.table, not {table.sql('duckdb')[:80]}: "
                "the gateway chooses which published file answers"
            )
        name = table.name
        schema = table.args.get("db")
        typed = f"{schema.name}.{table.name}" if schema else table.name
        if schema:
            dataset = self.datasets.get(f"{schema.name}.{name}")
        else:
            candidates = self.by_table.get(name, [])
            if len(candidates) > 1:
                raise Denied(f"{typed!r} is in more than one schema ({', '.join(sorted(candidates))}); qualify it")
            dataset = self.datasets.get(candidates[0]) if candidates else None
        if dataset is None:
            raise Denied(
                f"no dataset {typed!r} is published; `dataops catalog search TEXT` or catalog.datasets lists them"
            )
        return dataset

    def file_for(self, dataset: Dataset) -> str:
        """The file that answers this role: restricted (clear) or general (pseudonymised); or a refusal."""
        if not self.policy.can_read(self.role, dataset.name, dataset.classification):
            granted = ", ".join(self.policy.readers(dataset.name, dataset.classification)) or "nobody"
            raise Denied(
                f"{dataset.name} is restricted: granted to {granted}; your role is {self.role}. "
                f"{self.policy.how_to_ask}"
            )
        clear = bool(dataset.pii_columns) and self.policy.sees_personal_data(self.role, dataset.name)
        wanted = RESTRICTED if dataset.classification == "restricted" or clear else GENERAL
        if wanted not in dataset.files:
            raise Denied(f"{dataset.name} is not published in the form your role reads; publish again")
        return wanted


def authorise(sql: str, datasets: dict[str, Dataset], policy: Policy, role: str, max_bytes: int) -> Analysis:
    """Parse, resolve, authorise and rewrite one query for a role; then authorise the rewrite again."""
    precheck(sql, max_bytes)
    statement = parse(sql)
    resolver = Resolver(datasets, policy, role)
    refs = references(statement)
    _check_table_functions(refs.functions)
    aliases = {GENERAL: f"general_{secrets.token_hex(6)}", RESTRICTED: f"restricted_{secrets.token_hex(6)}"}
    used: dict[str, str] = {}  # dataset -> file
    for table in refs.real:
        dataset = resolver.resolve(table)
        used[dataset.name] = resolver.file_for(dataset)
        _point_at(table, aliases[used[dataset.name]], dataset)
    try:
        final = statement.sql(dialect="duckdb", comments=False)
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise Denied(f"the query could not be rewritten ({_first_line(exc)})", outcome="invalid") from None
    tables = _reauthorise(final, resolver, aliases, used, expected=len(refs.real))
    notes = [
        f"{name}: personal data ({', '.join(sorted(datasets[name].pii_columns))}) is pseudonymised"
        for name, file in sorted(used.items())
        if file == GENERAL and datasets[name].pii_columns
    ]
    return Analysis(
        sql=final,
        aliases={file: alias for file, alias in aliases.items() if file in used.values()},
        datasets=sorted(used),
        columns=audit_columns(final, datasets, aliases),
        tables=tables,
        notes=notes,
    )


def _check_table_functions(functions: list[exp.Table]) -> None:
    for table in functions:
        if not isinstance(table.this, TABLE_FUNCTIONS):
            name = table.this.sql_name() if isinstance(table.this, exp.Func) else type(table.this).__name__
            raise Denied(
                f"table function {str(name).lower()}() is not allowed: query published datasets "
                "(range, generate_series and unnest are the table functions allowed)"
            )


def _point_at(table: exp.Table, alias: str, dataset: Dataset) -> None:
    """Name the table in full, quoted: its columns still bind as ``table.column`` or ``schema.table.column``."""
    table.set("catalog", exp.to_identifier(alias, quoted=True))
    table.set("db", exp.to_identifier(dataset.schema, quoted=True))
    table.set("this", exp.to_identifier(dataset.table, quoted=True))


def _reauthorise(
    final: str, resolver: Resolver, aliases: dict[str, str], used: dict[str, str], expected: int
) -> set[str]:
    """The rewritten statement, parsed and analysed from scratch: every real reference names a file of this
    query and a dataset the role reads from that file, and there are as many as were authorised."""
    statement = parse(final)
    refs = references(statement)
    _check_table_functions(refs.functions)
    by_alias = {alias: file for file, alias in aliases.items()}
    tables: set[str] = set()
    for table in refs.real:
        catalog, name = table.catalog, f"{table.db}.{table.name}"
        file = by_alias.get(catalog)
        if file is None or used.get(name) != file or resolver.file_for(resolver.datasets[name]) != file:
            raise Denied("the rewritten query reads something that was not authorised; refused", outcome="error")
        tables.add(f"{catalog}.{name}")
    if len(refs.real) != expected or any(t.args.get("db") or t.args.get("catalog") for t in refs.ctes):
        raise Denied("the rewritten query does not read what was authorised; refused", outcome="error")
    return tables


def audit_columns(final: str, datasets: dict[str, Dataset], aliases: dict[str, str]) -> list[str]:
    """``schema.table.column`` for every column of a dataset the statement that runs refers to, stars
    expanded (``count(*)`` names none); ``schema.table.*`` for every dataset read when the columns cannot be
    told apart."""
    by_alias = {alias: file for file, alias in aliases.items()}
    schema: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for file, alias in aliases.items():
        for dataset in datasets.values():
            if file in dataset.files:
                schema.setdefault(alias, {}).setdefault(dataset.schema, {})[dataset.table] = dict(dataset.columns)
    statement = sqlglot.parse_one(final, read="duckdb")
    read = {
        f"{t.args['db'].name}.{t.name}"
        for t in statement.find_all(exp.Table)
        if t.args.get("catalog") and t.args["catalog"].name in by_alias
    }
    try:
        mapping = cast(dict[str, object], schema)
        qualified = qualify(statement, schema=mapping, dialect="duckdb", validate_qualify_columns=False)
        out: set[str] = set()
        for scope in traverse_scope(qualified):
            for column in scope.columns:
                source = scope.sources.get(column.table)
                if isinstance(source, exp.Table) and source.args.get("db"):
                    out.add(f"{source.args['db'].name}.{source.name}.{column.name}")
        return sorted(out)
    except (SqlglotError, RecursionError, ValueError, KeyError, AttributeError):
        return sorted(f"{d}.*" for d in read)
