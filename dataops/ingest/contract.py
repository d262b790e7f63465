"""Apply an ingestion contract to landed rows: read source formats, type, validate, split off the bad.

Source values are read with the formats the contract declares (mixed date formats, timestamps that are
naive, UTC or offset, amounts with thousands separators), then typed. A value that cannot be read is a
row failure (pandera coerces whole columns, so per-row coercion is decided here, by comparing nulls
before and after a non-strict cast). The pandera model then validates the typed rows eagerly
(``lazy=True``) and its failure cases, not ``drop_invalid_rows``, decide which rows go to quarantine,
each with every reason and its original payload. Nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import pandera.errors
import polars as pl

from dataops.ingest.lake import LINEAGE
from quality.contracts import Contract

TIMESTAMP_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.fZ", "UTC"),
    ("%Y-%m-%dT%H:%M:%SZ", "UTC"),
    ("%Y-%m-%dT%H:%M:%S%.f%:z", None),
    ("%Y-%m-%dT%H:%M:%S%:z", None),
    ("%Y-%m-%d %H:%M:%S%.f", "UTC"),  # naive: the systems document UTC
    ("%Y-%m-%d %H:%M:%S", "UTC"),
    ("%Y-%m-%dT%H:%M:%S", "UTC"),
)
_QUARANTINE_COLUMNS: dict[str, pl.DataType] = {
    "_system": pl.String(),
    "_run_id": pl.String(),
    "_record_hash": pl.String(),
    "_source": pl.String(),
    "_extracted_at": pl.Datetime("us", "UTC"),
    "_partition": pl.Date(),
    "_key": pl.String(),
    "_reasons": pl.List(pl.String),
    "_payload": pl.String(),
}
QUARANTINE_SCHEMA = pl.Schema(_QUARANTINE_COLUMNS)


class ContractViolation(ValueError):
    """A file does not have the shape the contract requires; the partition cannot be loaded."""


@dataclass
class ContractResult:
    valid: pl.DataFrame
    quarantined: pl.DataFrame
    extra_columns: list[str] = field(default_factory=list)

    def top_reasons(self, n: int | None = 5) -> list[tuple[str, int]]:
        counts: Counter[str] = Counter()
        for reasons in self.quarantined["_reasons"].to_list():
            counts.update(reasons)
        return counts.most_common(n)


def check_shape(contract: Contract, columns: list[str], source: str, day: dt.date) -> list[str]:
    """Raise when a required column is missing (or renamed without a declared alias); return extras.

    ``source`` names where the partition came from (the export file or API object, and its business date).
    """
    present = set(columns) - set(LINEAGE)
    expected = contract.columns()
    usable_aliases = {
        alias.source_name: name
        for name, aliases in contract.aliases.items()
        for alias in aliases
        if day >= alias.effective_from
    }
    for name in contract.required():
        if name in present:
            continue
        stand_ins = [a for a, target in usable_aliases.items() if target == name and a in present]
        if not stand_ins:
            hint = ""
            declared = [a.source_name for a in contract.aliases.get(name, ())]
            if declared:
                hint = f" (alias {declared} does not apply before its effective date)"
            raise ContractViolation(
                f"{source}: required column '{name}' of {contract.name} is missing{hint}; "
                f"the source has {sorted(present)}. If the source renamed it, declare an alias in the contract."
            )
    return sorted(present - set(expected) - set(usable_aliases))


def _read_column(contract: Contract, name: str, target: pl.DataType, source: pl.Expr) -> pl.Expr:
    text = source.cast(pl.String).str.strip_chars()
    if target == pl.Date:
        return pl.coalesce([text.str.to_date(fmt, strict=False) for fmt in contract.date_formats])
    if isinstance(target, pl.Decimal):
        cleaned = text.str.replace_all(",", "") if name in contract.amounts_with_separators else text
        return cleaned.cast(target, strict=False)
    if target == pl.Boolean:
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(["1", "true", "t", "yes"]))
            .then(True)
            .when(lowered.is_in(["0", "false", "f", "no"]))
            .then(False)
        )
    if target == pl.String:
        return source.cast(pl.String)
    return text.cast(target, strict=False)


def _timestamps(source: pl.Series) -> pl.Series:
    """Text as UTC timestamps, each value read with the first of ``TIMESTAMP_FORMATS`` that reads it.

    Each format is tried only on the values no earlier format read: a source writes nearly all its values
    one way, and a format that fails is the slow path of the parser."""
    text = source.cast(pl.String).str.strip_chars()
    out = pl.Series(source.name, [None] * len(text), dtype=pl.Datetime("us", "UTC"))
    todo = text.is_not_null().arg_true()
    for fmt, zone in TIMESTAMP_FORMATS:
        if todo.len() == 0:
            break
        value = text.gather(todo).str.to_datetime(fmt, strict=False, time_unit="us", time_zone=zone)
        value = value.dt.convert_time_zone("UTC") if zone is None else value
        read = value.is_not_null()
        out = out.scatter(todo.filter(read), value.filter(read))
        todo = todo.filter(~read)
    return out


def _typed(contract: Contract, batch: pl.DataFrame) -> pl.DataFrame:
    """The contract's columns read from the batch's text, with its ``_row``."""
    expected = contract.columns()
    stamps = {n for n, t in expected.items() if isinstance(t, pl.Datetime)}
    typed = batch.select(
        "_row", *[_read_column(contract, n, t, pl.col(n)).alias(n) for n, t in expected.items() if n not in stamps]
    )
    return typed.with_columns(*[_timestamps(batch[n]) for n in stamps]).select("_row", *expected)


def apply_contract(contract: Contract, batch: pl.DataFrame, source_columns: list[str]) -> ContractResult:
    """Split a batch of landed rows (source columns + lineage) into typed valid rows and quarantine."""
    expected = contract.columns()
    batch = _with_aliases(contract, batch.with_row_index("_row"))
    alias_names = {a.source_name for aliases in contract.aliases.values() for a in aliases}
    extras = [c for c in source_columns if c not in expected and c not in alias_names]
    for name in expected:
        if name not in batch.columns:
            batch = batch.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    typed = _typed(contract, batch)
    reasons = _unreadable(contract, batch, typed)
    _validate(contract, batch, typed.filter(~pl.col("_row").is_in(list(reasons))), reasons)
    if "_payload" in batch.columns:  # computed per landed file by the reader
        payload: pl.Series | None = batch["_payload"]
    else:
        payload = batch.select(pl.struct(source_columns).struct.json_encode()).to_series() if source_columns else None
    key = pl.concat_str([batch[k].cast(pl.String) for k in contract.key], separator=":", ignore_nulls=False)
    lineage = batch.select(*[c for c in LINEAGE if c in batch.columns], _key=key, _row=pl.col("_row"))
    if "_extra" in batch.columns:  # computed per landed file by the reader
        extra_json = batch.select(pl.col("_extra").cast(pl.String))
    elif extras:
        extra_json = batch.select(pl.struct(extras).struct.json_encode().alias("_extra"))
    else:
        extra_json = pl.DataFrame({"_extra": pl.Series([None] * batch.height, dtype=pl.String)})
    payload_col = pl.DataFrame(
        {"_payload": payload if payload is not None else [None] * batch.height}, schema={"_payload": pl.String}
    )
    # Valid rows keep their payload until loaded: a row quarantined later (an orphan) needs it.
    valid = pl.concat([typed, extra_json, lineage.drop("_row", "_key"), payload_col], how="horizontal")
    valid = valid.filter(~pl.col("_row").is_in(sorted(reasons))).drop("_row")
    return ContractResult(valid=valid, quarantined=_quarantine(lineage, payload, reasons), extra_columns=extras)


def _with_aliases(contract: Contract, batch: pl.DataFrame) -> pl.DataFrame:
    """From its effective date, a renamed column supplies the contract column."""
    for name, aliases in contract.aliases.items():
        for alias in aliases:
            if alias.source_name in batch.columns:
                effective = pl.col("_partition") >= pl.lit(alias.effective_from)
                current = pl.col(name) if name in batch.columns else pl.lit(None, dtype=pl.String)
                batch = batch.with_columns(
                    pl.when(effective & current.is_null())
                    .then(pl.col(alias.source_name).cast(pl.String))
                    .otherwise(current.cast(pl.String))
                    .alias(name)
                )
    return batch


def _unreadable(contract: Contract, batch: pl.DataFrame, typed: pl.DataFrame) -> dict[int, list[str]]:
    """Rows with a value that cannot be read as its column's type, with the reasons (row -> reasons)."""
    expected = contract.columns()
    unreadable = [
        pl.when(batch[n].is_not_null() & typed[n].is_null()).then(pl.lit(f"{n}: cannot read {{}} as {t}")).alias(n)
        for n, t in expected.items()
    ]
    coercion = batch.select("_row", *unreadable)
    reasons: dict[int, list[str]] = {}
    for name in expected:
        bad = coercion.filter(pl.col(name).is_not_null())
        for row, template in zip(bad["_row"].to_list(), bad[name].to_list(), strict=True):
            reasons.setdefault(row, []).append(template.format(repr(batch[name][row])))
    return reasons


def _validate(contract: Contract, batch: pl.DataFrame, readable: pl.DataFrame, reasons: dict[int, list[str]]) -> None:
    """Add the rows that break the contract's checks to ``reasons``; raise when the batch as a whole does,
    naming the source files and business dates it came from."""
    try:
        contract.model.validate(readable.drop("_row"), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        schema_level = cases.filter(pl.col("index").is_null())
        if schema_level.height:
            detail = "; ".join(f"{c}: {k}" for c, k in schema_level.select("column", "check").iter_rows())
            found = batch["_source"].unique().to_list() if "_source" in batch.columns else []
            sources = ", ".join(sorted(str(v) for v in found)) or contract.name
            dates = f"{batch['_partition'].min()!s}..{batch['_partition'].max()!s}" if batch.height else "-"
            raise ContractViolation(
                f"{contract.name} from {sources} (business dates {dates}): the typed batch breaks the contract: "
                f"{detail}"
            ) from exc
        rows = readable["_row"].to_list()
        for index, column, check in cases.select("index", "column", "check").iter_rows():
            reasons.setdefault(rows[index], []).append(f"{column}: {check}")


def _quarantine(lineage: pl.DataFrame, payload: pl.Series | None, reasons: dict[int, list[str]]) -> pl.DataFrame:
    """The quarantined rows: their lineage, key, reasons and payload."""
    bad_rows = sorted(reasons)
    return (
        pl.DataFrame(
            {
                **{c: lineage[c].gather(bad_rows) for c in LINEAGE if c in lineage.columns},
                "_key": lineage["_key"].gather(bad_rows),
                "_reasons": pl.Series([reasons[r] for r in bad_rows], dtype=pl.List(pl.String)),
                "_payload": payload.gather(bad_rows)
                if payload is not None
                else pl.Series([None] * len(bad_rows), dtype=pl.String),
            }
        )
        .select(list(QUARANTINE_SCHEMA))
        .cast(QUARANTINE_SCHEMA)
    )
