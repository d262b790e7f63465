"""Smoke run of the benchmark harness at a tiny scale: it works end to end, and the floor (the compiled dbt
SQL in one DuckDB connection) gives exactly the KPIs of the pipeline. No timing is asserted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import ab, run
from benchmarks.probe import Span
from benchmarks.run import growth, main
from benchmarks.worker import stage_times

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("bench")]


def test_harness_smoke(tmp_path: Path) -> None:
    output = tmp_path / "results"
    code = main(
        [
            "--scale", "0.01", "--days", "2", "--incremental=", "--no-profile",
            "--work", str(tmp_path / "work"), "--output", str(output), "--tag=-smoke",
        ]
    )  # fmt: skip
    [result_path] = output.glob("*-SF0.01-smoke.json")
    result = json.loads(result_path.read_text())
    build, floor = result["full"]["build"], result["full"]["floor"]
    assert code == 0
    assert result["complete"] and build["success"], build["failures"]
    assert result["full"]["kpis_compared"]["identical"], result["full"]["kpis_compared"]
    assert result["full"]["kpis_compared"]["rows_pipeline"] > 0
    assert floor["models"] > 10 and floor["wall_s"] > 0
    assert set(build["stages"]) >= {"extract", "land", "load", "validate", "dbt", "checks", "publish"}
    assert build["stages"]["dbt"]["seconds"] > 0 and build["peak_rss"] > 0
    assert build["pandera"]["validate"]["rows"] > 0
    assert result["machine"]["cores"] and result["machine"]["packages"]["duckdb"]
    # the landing run and the build that follows it; every table is materialised once, whatever the days
    events = build["events"]
    assert build["runs"] == 2 and events["RUN_SUCCESS"] == 2, events
    assert events["ASSET_MATERIALIZATION"] >= 17, events
    # Dagster alone: the same run with every step idle writes the events the build wrote
    alone = result["full"]["dagster_alone"]
    counted = ("ASSET_MATERIALIZATION", "ASSET_MATERIALIZATION_PLANNED", "ASSET_CHECK_EVALUATION", "STEP_OUTPUT")
    assert alone["success"] and alone["steps"].keys() == build["steps"].keys(), (alone["steps"], build["steps"])
    assert {k: alone["events"].get(k) for k in counted} == {k: events.get(k) for k in counted}
    table = result_path.with_suffix(".md").read_text()
    assert "| **full build / floor** |" in table
    assert "| Dagster alone / floor |" in table
    assert f"Dagster events the build wrote: {sum(events.values()):,} (" in table
    # `python -m benchmarks.ab` measures a run as it measures this build: from its Dagster events and dbt's log
    phases = ab.measure(run.full_dir(tmp_path / "work", 0.01), {"wall_s": build["wall_s"]})
    assert 0 < phases["dbt_first_node_s"] < phases["dbt_step_s"] < phases["build_run_s"] < phases["wall_s"]
    assert phases["before_dbt_s"] > 0 and phases["after_dbt_s"] > 0 and phases["dbt_span_s"] > 0


def _pipeline_result(args: dict[str, Any], wall: float) -> dict[str, Any]:
    """What a pipeline task reports, made up, for a ladder whose tasks are fakes."""
    stages = {s: {"seconds": 0.0, "peak_rss": 0} for s in ("dbt", "checks")}
    outcome = {"success": True, "failures": [], "failed_checks": [], "wall_s": wall, "startup_s": 0.0}
    timing = {"planning_s": 0.0, "peak_rss": 1, "stages": stages, "steps": {}, "events": {}}
    return outcome | timing | {"days": 1, "start": args["start"], "end": args["end"]}


def test_the_ladder_reads_the_sources_as_they_were_on_each_runs_last_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run sees the systems of record as on the real schedule: simulated through its own last day, never
    further (a CRM keeps only each record's current state). The tasks are recorded, not run."""
    calls: list[tuple[str, ...]] = []

    def task(name: str, **args: Any) -> dict[str, Any]:
        if name == "simulate":
            calls.append(("simulate", args["start"], args["through"]))
            return {"wall_s": 0.0}
        if name == "dagster_alone":
            calls.append(("dagster_alone", args["start"], args["end"]))
            return {"success": True, "wall_s": 1.0, "steps": {}, "events": {}}
        calls.append(("pipeline", args["start"], args["end"], args["rebuild_unchanged"]))
        return _pipeline_result(args, 1.0)

    monkeypatch.setattr(run, "task", task)
    start = dt.date(2025, 1, 1)
    result = run.ladder(tmp_path, 1.0, start, [2, 5], seed=1)

    day = lambda n: (start + dt.timedelta(days=n)).isoformat()  # noqa: E731
    assert calls == [
        ("simulate", day(0), day(1)),
        ("pipeline", day(0), day(1), False),  # history: days 0-1
        ("simulate", day(0), day(2)),
        ("pipeline", day(2), day(2), False),  # daily run after 2 days
        ("simulate", day(0), day(4)),
        ("pipeline", day(3), day(4), False),  # history up to 5 days
        ("simulate", day(0), day(5)),
        ("pipeline", day(5), day(5), False),  # daily run after 5 days
        ("pipeline", day(5), day(5), False),  # the same day again: no new data
        ("pipeline", day(5), day(5), True),  # and again, with dbt run over the unchanged build
        ("pipeline", day(2), day(2), False),  # one old day re-run inside the history
        ("dagster_alone", day(5), day(5)),  # and the daily run with every step idle
    ]
    kinds = [(r["kind"], r["history_days"]) for r in result["runs"]]
    assert kinds == [
        ("history", 2),
        ("daily", 2),
        ("history", 5),
        ("daily", 5),
        ("no_data", 5),
        ("no_data_rebuilt", 5),
        ("old_day", 5),
    ]


def test_with_repeat_each_round_runs_every_measured_point_again_on_a_copy_of_its_first_rounds_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 2 runs the daily run after each history on the data directory as it was just before round 1's
    (what the runs in between wrote is gone, the sources are those of that day), then the no-data day, the old
    day and Dagster alone after the longest; the kept states are removed at the end. The tasks are fakes that
    leave a file in the data directory for each run."""
    data_dir = tmp_path / "SF1" / "ladder"
    seen: list[tuple[str, str, str, list[str]]] = []

    def task(name: str, **args: Any) -> dict[str, Any]:
        if name == "simulate":
            (data_dir / "sources").mkdir(parents=True, exist_ok=True)
            (data_dir / "sources" / "through").write_text(args["through"])
            return {"wall_s": 0.0}
        ran = sorted(p.name for p in data_dir.glob("ran-*"))
        seen.append((name, args["start"], (data_dir / "sources" / "through").read_text(), ran))
        (data_dir / f"ran-{len(seen):02d}").touch()
        return _pipeline_result(args, float(len(seen)))

    monkeypatch.setattr(run, "task", task)
    start = dt.date(2025, 1, 1)
    result = run.ladder(tmp_path, 1.0, start, [2, 5], seed=1, repeat=2)

    day = lambda n: (start + dt.timedelta(days=n)).isoformat()  # noqa: E731
    first = [s[3] for s in seen[:8]]
    assert [s[:3] for s in seen[8:]] == [
        ("pipeline", day(2), day(2)),  # after 2 days, on the sources of that day
        ("pipeline", day(5), day(5)),
        ("pipeline", day(5), day(5)),  # no new data
        ("pipeline", day(2), day(5)),  # the old day, inside the history
        ("dagster_alone", day(5), day(5)),
    ]
    assert seen[8][3] == first[1] == ["ran-01"]  # as before round 1's daily run after 2 days: the history alone
    assert seen[9][3] == first[3] == ["ran-01", "ran-02", "ran-03"]
    assert seen[10][3] == [*first[3], "ran-10"] and seen[11][3] == [*first[3], "ran-10", "ran-11"]
    rounds = [(r["kind"], r["history_days"], r["round"], r["wall_s"]) for r in result["repeats"]]
    assert rounds == [
        ("daily", 2, 2, 9.0),
        ("daily", 5, 2, 10.0),
        ("no_data", 5, 2, 11.0),
        ("old_day", 5, 2, 12.0),
        ("dagster_alone", 5, 2, 13.0),
    ]
    assert not (tmp_path / "SF1" / "ladder-states").exists()
    assert "| daily incremental | 5 | 4.0 | 10.0 | 7.0 |" in run._rounds_table(result)


def test_a_restore_sets_the_directory_it_replaces_aside_for_the_caller_to_delete(tmp_path: Path) -> None:
    """Deleting gigabytes on a disk mounted with online discard trims them beside the next run: the replaced
    directory is moved aside, whole, and the copy is the state's."""
    state, directory, aside = tmp_path / "state", tmp_path / "ladder", tmp_path / "aside"
    (state / "warehouse").mkdir(parents=True)
    (state / "warehouse" / "build.duckdb").write_text("kept")
    (directory / "warehouse").mkdir(parents=True)
    (directory / "warehouse" / "build.duckdb").write_text("used")
    run.restore(state, directory, aside)
    assert (directory / "warehouse" / "build.duckdb").read_text() == "kept"
    [used] = aside.iterdir()
    assert (used / "warehouse" / "build.duckdb").read_text() == "used"


def test_the_targets_take_the_median_of_the_rounds_and_the_growth_each_rounds_own_ratio() -> None:
    """Medians of the walls would say +20% here (12 s against 10 s); the rounds' own ratios are +20%, 0%, +5%."""

    def measured(kind: str, days: int, wall: float, round_: int) -> dict[str, Any]:
        return {"kind": kind, "history_days": days, "wall_s": wall, "round": round_}

    runs = [measured("daily", 30, 10.0, 1), measured("daily", 720, 12.0, 1), measured("old_day", 720, 21.0, 1)]
    runs = [{k: v for k, v in r.items() if k != "round"} for r in runs]  # the ladder's own runs carry no round
    repeats = [measured("daily", 30, 14.0, 2), measured("daily", 720, 14.0, 2), measured("old_day", 720, 19.0, 2)]
    repeats += [measured("daily", 30, 10.0, 3), measured("daily", 720, 10.5, 3), measured("old_day", 720, 19.5, 3)]
    judged = run.targets({"scale": 10, "incremental": {"runs": runs, "repeats": repeats}})
    assert judged["daily_720_s"] == ("12.0 s (median of 3 rounds: 12.0 s, 14.0 s, 10.5 s)", 15.0, "yes")
    assert judged["daily_growth_30_to_720"] == (
        "+5% (30 to 720 days; median of 3 rounds: +20%, +0%, +5%)",
        0.1,
        "yes",
    )
    assert judged["old_day_rerun_s"] == ("19.5 s (median of 3 rounds: 21.0 s, 19.0 s, 19.5 s)", 20.0, "yes")
    assert judged["no_data_s"][2] == "n/a"


def test_repeat_refuses_an_instance_on_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--no-full", "--repeat", "2", "--dagster-storage", "postgres"])
    assert "--repeat needs --dagster-storage sqlite" in capsys.readouterr().err


def test_on_postgres_the_ladders_runs_share_one_new_database_and_dagster_alone_gets_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on SQLite, where the ladder's runs share its data directory's instance and Dagster alone has a new
    one: each new instance is a new, empty database of the session's server. Server and tasks are fakes."""
    made: list[str] = []
    seen: list[tuple[str, str | None]] = []

    class Server:
        def new_database(self, name: str) -> str:
            made.append(name)
            return f"postgresql://dagster@127.0.0.1:1/{name}"

    def task(name: str, env: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
        seen.append((name, (env or {}).get("DATAOPS_PG_URL")))
        stages = {s: {"seconds": 0.0, "peak_rss": 0} for s in ("dbt", "checks")}
        keys = ("start", "end", "days", "wall_s", "startup_s", "planning_s", "peak_rss")
        outcome = {"success": True, "failures": [], "failed_checks": [], "stages": stages, "steps": {}, "events": {}}
        return {k: args.get(k, 0) for k in keys} | outcome

    monkeypatch.setattr(run, "task", task)
    monkeypatch.setattr(run, "SERVER", [Server()])
    run.ladder(tmp_path, 1.0, dt.date(2025, 1, 1), [2], seed=1)

    ladder, alone = "postgresql://dagster@127.0.0.1:1/ladder", "postgresql://dagster@127.0.0.1:1/dagster_alone"
    assert made == ["ladder", "dagster_alone"]
    assert {url for name, url in seen if name == "pipeline"} == {ladder}
    assert [url for name, url in seen if name == "dagster_alone"] == [alone]
    monkeypatch.setattr(run, "SERVER", [])
    assert run.new_instance("ladder") == {}  # on SQLite the Dagster home makes the instance


def test_the_table_names_the_instances_storage() -> None:
    sqlite = run.storage_phrase({"storage": "sqlite"})
    postgres = run.storage_phrase(
        {"storage": "postgres", "server": "postgres (PostgreSQL) 15.14", "event_batch_size": "7"}
    )
    assert "SQLite" in sqlite
    assert "PostgreSQL) 15.14" in postgres and "DAGSTER_EVENT_BATCH_SIZE=7" in postgres


def test_growth_exponent() -> None:
    assert growth([(0.1, 1.0), (1, 10.0), (10, 100.0)]) == pytest.approx(1.0)
    assert growth([(1, 5.0)]) is None


def test_the_ladder_table_shows_each_runs_ingestion_seconds() -> None:
    stages = {"extract": 1.0, "land": 0.5, "load": 2.0, "validate": 0.25, "dbt": 9.0, "checks": 0.5}
    no_data = {
        "kind": "no_data", "history_days": 720, "start": "2026-11-28", "end": "2026-11-28", "success": True,
        "failed_checks": [], "failures": [], "wall_s": 40.0, "startup_s": 4.0, "peak_rss": 2**30,
        "stages": {name: {"seconds": seconds, "peak_rss": 0} for name, seconds in stages.items()},
        "events": {"STEP_OUTPUT": 1000, "ASSET_MATERIALIZATION": 234},
    }  # fmt: skip
    [row] = [line for line in run._ladder_and_scaling_tables({"incremental": {"runs": [no_data]}}) if "no new" in line]
    assert row.split(" | ")[4:8] == ["3.8", "9.0", "0.5", "1,234"]  # ingest = extract + land + load + validate


def test_the_events_phrase_names_the_total_and_the_largest_kinds() -> None:
    events = {"LOG_MESSAGE": 3, "ASSET_MATERIALIZATION": 31_000, "STEP_OUTPUT": 223}
    assert run.events_phrase(events, shown=2) == "31,226 (ASSET_MATERIALIZATION 31,000, STEP_OUTPUT 223)"


def test_the_volume_breakers_count_as_checks_not_as_orchestration() -> None:
    """They run inside their ingestion steps: the probe's spans put their seconds under checks."""
    spans = [Span("extract", 0.0, 1.0), Span("breaker", 1.0, 1.25), Span("breaker", 3.0, 3.5)]
    seconds, intervals = stage_times(spans, {"checks": [(10.0, 10.5)], "dbt": [(5.0, 9.0)]})
    assert seconds["checks"] == pytest.approx(1.25)  # the gate's step and both breakers
    assert intervals["checks"] == [(10.0, 10.5), (1.0, 1.25), (3.0, 3.5)]
    assert seconds["extract"] == 1.0 and seconds["dbt"] == 4.0


def _sf10_full(alone: dict[str, Any]) -> dict[str, Any]:
    build = {
        "wall_s": 80.0, "startup_s": 4.0, "peak_rss": 2**30, "success": True,
        "stages": {"dbt": {"seconds": 30.0, "peak_rss": 0}},
    }  # fmt: skip
    compared = {"identical": True, "rows_pipeline": 1}
    floor = {"wall_s": 4.0, "peak_rss": 0}
    return {"build": build, "floor": floor, "ratio": 20.0, "kpis_compared": compared, "dagster_alone": alone}


def test_the_tables_set_dagster_alone_beside_the_floor_and_name_it_in_the_sf10_target() -> None:
    full = _sf10_full({"success": True, "wall_s": 24.0, "startup_s": 3.0, "steps": {}, "events": {}})
    lines = run._full_build_table(full)
    assert "| Dagster alone / floor | 6.0x | | |" in lines
    assert "| (full build - Dagster alone) / floor | 14.0x | | |" in lines
    result = {"scale": 10, "full": full}
    assert run.targets(result)["full_build_ratio"] == ("20.0x (Dagster alone, every step idle: 6.0x)", 10.0, "NO")
    assert run.targets(result)["peak_gib"] == ("1.00 GiB", 4.0, "yes")  # SF 10's limit
    daily = {"success": True, "wall_s": 8.0, "startup_s": 3.0, "steps": {"enterprise_model": 1.5}, "events": {"X": 9}}
    [row] = [
        line
        for line in run._ladder_and_scaling_tables({"incremental": {"runs": [], "dagster_alone": daily}})
        if "Dagster alone" in line
    ]
    assert row.split(" | ")[2:8] == ["8.0", "3.0", "–", "1.5", "–", "9"]


def test_a_failed_idle_run_is_shown_failed_and_left_out_of_the_target() -> None:
    failed = {"success": False, "failures": ["enterprise_model: boom"], "wall_s": 2.0, "steps": {}, "events": {}}
    full = _sf10_full(failed)
    assert "| Dagster alone: FAILED (enterprise_model: boom) | | | |" in run._full_build_table(full)
    assert run.targets({"scale": 10, "full": full})["full_build_ratio"] == ("20.0x", 10.0, "NO")


def test_the_daily_targets_judge_the_ladder_growth_no_data_and_an_old_day() -> None:
    def run_of(kind: str, days: int, wall: float) -> dict[str, Any]:
        return {"kind": kind, "history_days": days, "wall_s": wall}

    ladder = [run_of("daily", 30, 10.0), run_of("daily", 720, 12.0), run_of("no_data", 720, 4.0)]
    judged = run.targets({"scale": 1, "incremental": {"runs": [*ladder, run_of("old_day", 720, 25.0)]}})
    assert judged["daily_720_s"] == ("12.0 s", 15.0, "yes")
    assert judged["daily_growth_30_to_720"] == ("+20% (30 to 720 days)", 0.1, "NO")
    assert judged["no_data_s"] == ("4.0 s", 5.0, "yes")
    assert judged["old_day_rerun_s"] == ("25.0 s", 20.0, "NO")
    assert judged["full_build_ratio"][2] == judged["peak_gib"][2] == "n/a"  # no full build in this result


def test_the_spark_row_runs_the_same_build_with_dbt_on_spark_against_the_same_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--engines duckdb,spark``: the full build again in its own data directory with DATAOPS_ENGINE=spark, its
    KPIs compared with the DuckDB build's, and its time set against the floor of the same session. The tasks
    are recorded, not run."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def task(name: str, env: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
        calls.append((name, args | {"env": env}))
        if name == "compare":
            return {"identical": True, "rows_pipeline": 62}
        stages = {"dbt": {"seconds": 300.0, "peak_rss": 2**31}}
        return {"success": True, "failures": [], "failed_checks": [], "wall_s": 400.0, "peak_rss": 2**31} | {
            "stages": stages
        }

    monkeypatch.setattr(run, "task", task)
    (tmp_path / "sources").mkdir()
    spark = run.spark_build(tmp_path, tmp_path / "sources", 10.0, dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    [(_, pipeline), (_, compare)] = calls
    assert pipeline["env"] == {"DATAOPS_ENGINE": "spark"} and pipeline["data_dir"].endswith("SF10/full-spark")
    assert compare["floor_db"] == str(tmp_path / "SF10" / "full" / "warehouse" / "build.duckdb")
    lines = run._full_build_table(_sf10_full({"success": True, "wall_s": 24.0, "startup_s": 3.0}) | {"spark": spark})
    assert "| **full build on Spark / floor** | **100.0x** | | |" in lines  # 400 s against the 4 s floor
    assert "KPIs of the Spark build and the DuckDB build identical: True (62 rows)." in lines


def test_harness_events_section_smoke(tmp_path: Path) -> None:
    """``--events``: the event stream's section on a tiny window, alone. Its usage KPIs equal the floor's (the
    same models' SQL in one DuckDB connection) and the simulator's truth, and the table reports each step."""
    output = tmp_path / "results"
    code = main(
        [
            "--no-full", "--incremental=", "--events", "0.02:3", "--no-profile",
            "--work", str(tmp_path / "work"), "--output", str(output), "--tag=-events",
        ]
    )  # fmt: skip
    [result_path] = output.glob("*-events.json")
    events = json.loads(result_path.read_text())["events"]
    assert code == 0
    assert events["simulation"]["lines"] > 1_000 and events["ingestion"]["landed"] > 1_000
    assert events["model"]["success"] and events["model"]["events"] > 1_000 and events["model"]["peak_rss"] > 0
    assert events["floor"]["models"] == events["model"]["models"] > 5, (events["floor"], events["model"])
    compared, truth = events["kpis_compared"], events["truth"]
    assert compared["identical"] and compared["rows_pipeline"] == truth["rows"] == truth["rows_truth"] > 0
    assert truth["identical"], truth
    table = result_path.with_suffix(".md").read_text()
    assert "| **model / floor** |" in table and "| ingestion (3 daily micro-batches;" in table


def test_the_run_fails_when_the_event_streams_kpis_differ_from_the_truth() -> None:
    events = {"model": {"success": True}, "kpis_compared": {"identical": True}}
    assert run.succeeded({"events": events | {"truth": {"identical": True}}})
    assert not run.succeeded({"events": events | {"truth": {"identical": False}}})
    assert not run.succeeded({"events": events | {"kpis_compared": {"identical": False}, "truth": {"identical": True}}})


def test_the_truth_comparison_names_a_usage_kpi_that_differs(tmp_path: Path) -> None:
    """One KPI on one day off by one user, and a day the truth has and the build has not: both are reported."""
    import duckdb
    import polars as pl

    from benchmarks.events_section import truth_task

    (tmp_path / "sources" / "truth").mkdir(parents=True)
    (tmp_path / "warehouse").mkdir()
    days = [dt.date(2025, 1, 1), dt.date(2025, 1, 2)]
    truth = pl.DataFrame({"date": days, "kpi": ["daily_active_users"] * 2, "value": [3, 4]})
    truth.with_columns(pl.col("value").cast(pl.Decimal(38, 2))).write_parquet(
        tmp_path / "sources" / "truth" / "usage_kpi_daily.parquet"
    )
    with duckdb.connect(str(tmp_path / "warehouse" / "build.duckdb")) as conn:
        conn.execute("create schema kpis")
        conn.execute("create table kpis.kpi_usage_daily (date_day date, kpi_name varchar, value decimal(38, 2))")
        conn.execute("insert into kpis.kpi_usage_daily values ('2025-01-01', 'daily_active_users', 3)")
    assert truth_task({"data_dir": str(tmp_path)})["identical"] is False  # a day missing
    with duckdb.connect(str(tmp_path / "warehouse" / "build.duckdb")) as conn:
        conn.execute("insert into kpis.kpi_usage_daily values ('2025-01-02', 'daily_active_users', 4)")
    assert truth_task({"data_dir": str(tmp_path)})["identical"] is True
    with duckdb.connect(str(tmp_path / "warehouse" / "build.duckdb")) as conn:
        conn.execute("update kpis.kpi_usage_daily set value = 5 where date_day = '2025-01-02'")
    result = truth_task({"data_dir": str(tmp_path)})
    assert result["identical"] is False and result["differing_rows"] == 1
    assert result["differences"] == [["2025-01-02", "daily_active_users", "4.00", "5.00"]]
