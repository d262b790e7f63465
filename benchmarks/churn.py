"""The churn model's figures from one command: ``python -m benchmarks.churn --scale 1`` (two years by default).

Issue 29's measure: on a simulated enterprise, the model beats the rule baseline on held-out months against
the simulator's truth. The daily pipeline builds a two-year window as one Dagster run per day, which takes
hours on a loaded machine; this command builds the same warehouse through the library in one pass instead:

1. simulate the window (continued, not redone, when ``--data-dir`` already holds it with the same settings);
2. land the product's events in daily micro-batches (``dataops.ingest.events``), the daily sensor's work;
3. ingest every source over the whole window (``dataops.ingest.pipeline.ingest``: the same contracts,
   landing one version per day, quarantine), the CRM through its mock API;
4. ``dbt build`` of the marts and usage models the features read, with their tests, over the whole window;
5. retrain on a time-based split (``dataops.models.workflow.retrain``: features point-in-time, labels from
   the marts) and evaluate the held-out months against the simulator's truth (``workflow.evaluate``).

Writes ``<output>/<date>-churn-SF<s>.json`` and ``.md`` (ROC AUC, precision at the top 10%, calibration,
lift over the baseline, the feature sets used, each stage's wall time) and prints the table. The figures
are deterministic given the seed, scale and window; the times are the machine's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from application.cli.model import truth_outcomes
from dataops.core.settings import Settings
from dataops.ingest import events
from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import ingest
from dataops.models import workflow
from dataops.models.labels import HORIZON_DAYS
from dataops.transform.runner import run_dbt
from quality.contracts import CONTRACTS
from registry.loader import load_registry
from source_systems.crm.server import start_in_thread
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import SimulationError, simulate, simulated_through

ROOT = Path(__file__).resolve().parents[1]
# What the features read (dataops/models/features.py), with everything upstream of it.
MODELS = (
    "+fct_customer_states_daily",
    "+fct_customer_state_events",
    "+fct_contracts",
    "+fct_contract_state_events",
    "+fct_invoices",
    "+fct_payments",
    "+fct_credit_memos",
    "+fct_opportunities",
    "+fct_fx_rates",
    "+int_usage_known_daily",
    "+int_usage_seat_changes_daily",
)


@dataclass(frozen=True)
class Options:
    scale: float
    start: dt.date
    end: dt.date
    seed: int = 42
    product_events: bool = True
    model_seed: int = 29
    holdout_days: int = workflow.DEFAULT_HOLDOUT_DAYS
    every_days: int = workflow.DEFAULT_EVERY_DAYS
    horizon_days: int = HORIZON_DAYS
    event_batch_days: int = 1  # days of delivery per batch of events (the sensor lands hours; a day is cheaper)


@dataclass
class Stages:
    """Wall seconds per stage, in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)


def land_events(settings: Settings, batch_days: int, through: dt.date) -> dict[str, int]:
    """The product's objects delivered by the end of ``through``, one batch per ``batch_days`` of delivery.

    What the sensor would have landed by the window's last day: an object delivered later is not known then.
    """
    todo = [o for o in events.pending(settings) if o.delivered_at.date() <= through]
    totals = {"batches": 0, "lines": 0, "landed": 0, "quarantined": 0}
    if not todo:
        return totals
    first = todo[0].delivered_at
    hours = 3600 * 24 * batch_days
    for _, chunk in groupby(todo, key=lambda o: int((o.delivered_at - first).total_seconds() // hours)):
        report = events.ingest_events(settings, list(chunk))
        if report.mismatched:
            raise RuntimeError(f"objects differ from their manifests: {report.mismatched[:5]}")
        totals["batches"] += 1
        for name in ("lines", "landed", "quarantined"):
            totals[name] += getattr(report, name)
    return totals


def ingest_sources(settings: Settings, start: dt.date, end: dt.date) -> dict[str, int]:
    """Every source's contract over the whole window: rows loaded and quarantined per contract."""
    out: dict[str, int] = {}
    with start_in_thread(settings.crm_db, rate_per_second=100_000.0, burst=100_000) as crm:
        sources: dict[str, Extractor] = {
            "erp": ErpExtractor(settings.erp_db),
            "crm": CrmExtractor(crm.url, crm.token),
            "accounting": AccountingExtractor(settings.accounting_exports),
        }
        for name, contract in CONTRACTS.items():
            report = ingest(settings, contract, sources[contract.system], start, end)
            out[name] = report.loaded_rows
            out[f"{name} quarantined"] = report.quarantined_rows
    return out


def build(settings: Settings, start: dt.date, end: dt.date) -> None:
    result = run_dbt(
        ["build", "--indirect-selection", "cautious", "--select", *MODELS],
        settings,
        window=(start.isoformat(), end.isoformat()),
    )
    if not result.success:
        raise RuntimeError(f"dbt build failed:\n{result.output[-4000:]}")


def reproduce(data_dir: Path, options: Options, config: SimConfig | None = None) -> dict[str, Any]:
    """Simulate, build in one pass, retrain and evaluate against the truth: the report as a dict.

    ``config`` replaces the simulation settings the options give (a test's tiny world with more dirt).
    """
    settings = Settings(data_dir)
    registry = load_registry()
    stages = Stages()
    config = config or SimConfig(
        seed=options.seed, scale=options.scale, start=options.start, product_events=options.product_events
    )
    simulated = simulated_through(settings.sources_dir)
    if simulated is not None and simulated > options.end:
        # the ERP and CRM hold current state: a row changed after the window's end is not extracted in it
        raise SimulationError(
            f"{settings.sources_dir} is simulated through {simulated}, past --end {options.end}: the sources' "
            "current state would not be the window's. Use a data directory simulated through --end at most."
        )
    with stages.timed("simulate"):
        simulate(settings.sources_dir, options.end, config)
    with stages.timed("land events"):
        landed = land_events(settings, options.event_batch_days, options.end)
    with stages.timed("ingest sources"):
        loaded = ingest_sources(settings, options.start, options.end)
    with stages.timed("dbt build"):
        build(settings, options.start, options.end)
    with stages.timed("retrain"):
        trained = workflow.retrain(
            settings,
            registry,
            seed=options.model_seed,
            holdout_days=options.holdout_days,
            every_days=options.every_days,
            horizon_days=options.horizon_days,
        )
    with stages.timed("evaluate against the truth"):
        truth = truth_outcomes(settings.truth_dir, options.horizon_days)
        measured = workflow.evaluate(settings, registry, truth, version=trained.model.version)
    return {
        "command": command_line(options),
        "options": {k: str(v) if isinstance(v, dt.date) else v for k, v in vars(options).items()},
        "version": trained.model.version,
        "feature_sets": trained.card["feature_sets"],
        "training_window": trained.card["training_window"],
        "test_window": trained.card["test_window"],
        "against_marts_labels": trained.metrics,
        "against_truth": measured,
        "events": landed,
        "rows_loaded": loaded,
        "stage_seconds": stages.seconds,
        "load_average": list(os.getloadavg()),
    }


def command_line(options: Options) -> str:
    parts = [
        "python -m benchmarks.churn",
        f"--scale {options.scale:g}",
        f"--start {options.start}",
        f"--end {options.end}",
        f"--seed {options.seed}",
    ]
    if not options.product_events:
        parts.append("--no-product-events")
    defaults = Options(options.scale, options.start, options.end)
    for name in ("model_seed", "holdout_days", "every_days", "horizon_days", "event_batch_days"):
        if getattr(options, name) != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(options, name)}")
    return " ".join(parts)


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    truth = report["against_truth"]
    model, base, lift = truth["model"], truth["baseline"], truth["lift_over_baseline"]
    lines = [
        f"# Churn model against the simulator's truth: `{report['command']}`",
        "",
        f"Model {report['version']}, feature sets {', '.join(report['feature_sets'])}; trained on "
        f"{report['training_window'][0]}..{report['training_window'][1]}, held out "
        f"{report['test_window'][0]}..{report['test_window'][1]}: {truth['rows']} scores of "
        f"{truth['customers']} customers on {truth['dates']} dates, {truth['churners']} churned within the "
        f"horizon (base rate {_f(truth['base_rate'])}; {truth['rows_without_truth']} scores without a truth row). "
        f"Product events landed: {report['events']['landed']:,}"
        + (" (no event stream: the usage features are all zero)." if not report["events"]["landed"] else "."),
        "",
        "| metric | model | baseline |",
        "| --- | --- | --- |",
        f"| ROC AUC | {_f(model['roc_auc'])} | {_f(base['roc_auc'])} |",
        f"| precision at top 10% | {_f(model['precision_at_top_10pct'])} | {_f(base['precision_at_top_10pct'])} |",
        f"| Brier score | {_f(model['brier'])} | |",
        f"| expected calibration error | {_f(model['expected_calibration_error'])} | |",
        f"| flagged share / precision of flagged | | {_f(base['flagged_share'])} / "
        f"{_f(base['precision_of_flagged'])} |",
        "",
        f"Lift over the baseline: ROC AUC {_f(lift['roc_auc_margin'])}, precision at top 10% "
        f"x{_f(lift['precision_at_top_10pct_ratio'])}.",
        "",
        "Calibration (held-out, against the truth):",
        "",
        "| predicted | rows | mean predicted | observed |",
        "| --- | --- | --- | --- |",
        *(f"| {b['bin']} | {b['rows']} | {_f(b['predicted'])} | {_f(b['observed'])} |" for b in model["bins"]),
        "",
        "Stage wall seconds: " + ", ".join(f"{k} {v}" for k, v in report["stage_seconds"].items()),
        f"; load average at the end {', '.join(f'{x:.1f}' for x in report['load_average'])}.",
    ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    scale = report["options"]["scale"]
    stem = f"{dt.date.today().isoformat()}-churn-SF{scale:g}"  # SF0.25: not a suffix to replace
    (output / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (output / f"{stem}.md").write_text(markdown(report))
    return output / f"{stem}.md"


def parse(argv: list[str] | None = None) -> tuple[Options, Path, Path]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 12, 30))
    parser.add_argument("--seed", type=int, default=42, help="the simulation's seed")
    parser.add_argument("--no-product-events", action="store_true", help="simulate without the event stream")
    parser.add_argument("--model-seed", type=int, default=29)
    parser.add_argument("--holdout-days", type=int, default=workflow.DEFAULT_HOLDOUT_DAYS)
    parser.add_argument("--every-days", type=int, default=workflow.DEFAULT_EVERY_DAYS)
    parser.add_argument("--horizon-days", type=int, default=HORIZON_DAYS)
    parser.add_argument("--event-batch-days", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="kept (and continued) here; default a scratch directory")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    a = parser.parse_args(argv)
    options = Options(
        a.scale,
        a.start,
        a.end,
        a.seed,
        not a.no_product_events,
        a.model_seed,
        a.holdout_days,
        a.every_days,
        a.horizon_days,
        a.event_batch_days,
    )
    return options, a.data_dir or Path(tempfile.mkdtemp(prefix="churn-benchmark-")), a.output


def main(argv: list[str] | None = None) -> int:
    options, data_dir, output = parse(argv)
    report = reproduce(data_dir, options)
    path = write(report, output)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
