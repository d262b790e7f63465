"""Two commits' daily runs, alternated in pairs on fresh copies of one state: ``python -m benchmarks.ab``.

A single run on this kind of machine spreads by about 2 s, more than most designs' effect (docs/performance.md),
so a design is judged by pairs: each pair runs both commits on copies of the same data directory (a history built
by the ladder, its sources advanced a day), the order alternating from pair to pair. Each commit runs from its own
tree (``git archive``) with this checkout's environment, and starts from its own dbt parse made for the day
before at the copy's path, as the day after a daily run does: a parse made by other code, or at another path,
would make every run parse much of the project again (decision 0099). Each run is the harness's ``pipeline``
task (the landing, then the build), measured from its Dagster events and dbt's log.

    python -m benchmarks.ab --state DATA_DIR --day 2026-12-07 --pairs 3 main my-branch
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.run import restore

ROOT = Path(__file__).resolve().parents[1]
DBT_STEP = "enterprise_model"
METRICS = ("wall_s", "build_run_s", "before_dbt_s", "dbt_step_s", "dbt_first_node_s", "dbt_span_s", "after_dbt_s")


def checkout(rev: str, work: Path) -> Path:
    """The commit's files in a tree of their own (made once), named by the commit."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    tree = work / "trees" / sha.strip()[:12]
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as staging:
            archive, files = Path(staging) / "tree.tar", Path(staging) / "tree"
            subprocess.run(["git", "archive", "-o", str(archive), rev], cwd=ROOT, check=True)
            files.mkdir()
            # tar(1), not tarfile: tarfile's extraction filters are missing from some 3.11 builds (Debian's 3.11.2)
            subprocess.run(["tar", "-xf", str(archive), "-C", str(files)], check=True)
            files.rename(tree)
    return tree


def _env(tree: Path, data_dir: Path) -> dict[str, str]:
    return os.environ | {
        "PYTHONPATH": str(tree),
        "DATAOPS_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
    }


def prepare(tree: Path, run_dir: Path, day_before: dt.date, parses: Path) -> Path:
    """The tree's dbt parse for the day before, made at the run copy's path and kept in ``parses``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    code = "import sys; from application.cli import app; sys.argv[0] = 'dataops'; app()"
    command = [sys.executable, "-c", code, "dbt", "--start", str(day_before), "--end", str(day_before), "parse"]
    subprocess.run(command, cwd=tree, env=_env(tree, run_dir), check=True, capture_output=True)
    kept = parses / tree.name
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for parse in (run_dir / "dbt_runs").glob("partial_parse-*.msgpack"):
        shutil.copy2(parse, kept / parse.name)
    return kept


def one_run(tree: Path, state: Path, run_dir: Path, day: dt.date, parse: Path) -> dict[str, Any]:
    """A fresh copy of the state with the tree's parse, one daily run of ``day`` by the tree's code, measured."""
    restore(state, run_dir, run_dir.parent / "aside")
    for old in (run_dir / "dbt_runs").glob("partial_parse-*.msgpack"):
        old.unlink()
    for saved in parse.iterdir():
        shutil.copy2(saved, run_dir / "dbt_runs" / saved.name)
    os.sync()  # the copy's writes on disk before the run, not flushed beside it
    out = run_dir.parent / f"{run_dir.name}.json"
    args = {"data_dir": str(run_dir), "start": str(day), "end": str(day), "out": str(out)}
    load = os.getloadavg()[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker", "pipeline", json.dumps(args)],
        cwd=tree,
        env=_env(tree, run_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the daily run of {tree.name} failed (exit {os.waitstatus_to_exitcode(status)})")
    summary = json.loads(out.read_text())
    return measure(run_dir, summary) | {
        "load_at_start": round(load, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # the run's process and every process it waited for
        "success": summary["success"],
        "steps": summary["steps"],
    }


def measure(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The build run's phases from its Dagster events (as the harness reads a run's steps), dbt's first node and
    last line from its log."""
    import dagster as dg

    from benchmarks.worker import run_records, step_intervals
    from dataops.core.settings import environ

    with environ({"DAGSTER_HOME": str(run_dir / "dagster_home")}):
        with dg.DagsterInstance.get() as instance:
            [build] = instance.get_run_records(limit=1)  # the newest: the build that followed the landing
        steps, _ = step_intervals(run_records([build.dagster_run.run_id]))
    run_start, run_end = build.start_time or 0.0, build.end_time or 0.0
    dbt_start, dbt_end = steps[DBT_STEP]
    log = run_dir / "dbt_runs" / build.dagster_run.run_id / "dbt.log"
    lines = [json.loads(line)["info"] for line in log.open()]
    stamps = [dt.datetime.fromisoformat(info["ts"]).timestamp() for info in lines]
    first = next(t for t, info in zip(stamps, lines, strict=True) if info["name"] in ("NodeStart", "LogStartLine"))
    return {
        "wall_s": summary["wall_s"],
        "build_run_s": round(run_end - run_start, 3),
        "before_dbt_s": round(dbt_start - run_start, 3),
        "dbt_step_s": round(dbt_end - dbt_start, 3),
        "dbt_first_node_s": round(first - dbt_start, 3),
        "dbt_span_s": round(stamps[-1] - first, 3),
        "after_dbt_s": round(run_end - dbt_end, 3),
    }


def order(pairs: int, a: str, b: str) -> list[str]:
    """The runs' order: a b, b a, a b, ... so that neither side always runs on the warmer or the later machine."""
    return [name for pair in range(pairs) for name in ((a, b) if pair % 2 == 0 else (b, a))]


def summarize(runs: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Each metric's range per side, and its difference b - a within each pair (pairs are runs 2i and 2i+1)."""
    result: dict[str, Any] = {}
    for metric in (*METRICS, "cpu_s"):
        side = {name: [r[metric] for r in runs if r["tree"] == name] for name in (a, b)}
        differences = []
        for i in range(0, len(runs) - 1, 2):
            pair = {runs[i]["tree"]: runs[i][metric], runs[i + 1]["tree"]: runs[i + 1][metric]}
            differences.append(round(pair[b] - pair[a], 3))
        result[metric] = {
            "ranges": {name: [min(v), max(v)] for name, v in side.items()},
            "differences": differences,
            "median_difference": round(statistics.median(differences), 3),
        }
    return result


def render(summary: dict[str, Any], a: str, b: str, pairs: int) -> str:
    lines = [
        f"| {pairs} alternated pairs | {a} | {b} | {b} − {a}, each pair | median |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for metric, entry in summary.items():
        lo_a, hi_a = entry["ranges"][a]
        lo_b, hi_b = entry["ranges"][b]
        each = ", ".join(f"{d:+.2f}" for d in entry["differences"])
        lines.append(
            f"| {metric} | {lo_a:.2f}–{hi_a:.2f} | {lo_b:.2f}–{hi_b:.2f} | {each} | {entry['median_difference']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, required=True, help="a data directory after a history's runs")
    parser.add_argument("--day", type=dt.date.fromisoformat, required=True, help="the day each run lands and builds")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dataops-ab")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="ab")
    parser.add_argument("a", help="the commit measured against (e.g. main)")
    parser.add_argument("b", help="the commit measured")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {rev: checkout(rev, args.work) for rev in (args.a, args.b)}
    run_dir = args.work / "run"
    day_before = args.day - dt.timedelta(days=1)
    made = {tree: prepare(tree, run_dir, day_before, args.work / "parses") for tree in set(trees.values())}
    parses = {rev: made[tree] for rev, tree in trees.items()}
    runs = []
    for i, rev in enumerate(order(args.pairs, args.a, args.b), start=1):
        runs.append(one_run(trees[rev], args.state, run_dir, args.day, parses[rev]) | {"tree": rev})
        print(f"[{i}] {rev}: " + ", ".join(f"{m} {runs[-1][m]}" for m in METRICS), file=sys.stderr, flush=True)
    for done in (run_dir, args.work / "aside"):
        shutil.rmtree(done, ignore_errors=True)
    summary = summarize(runs, args.a, args.b)
    args.output.mkdir(parents=True, exist_ok=True)
    name = f"{dt.date.today()}-{args.tag}"
    commits = {rev: tree.name for rev, tree in trees.items()}
    record = {"state": str(args.state), "day": str(args.day), "commits": commits, "runs": runs, "summary": summary}
    (args.output / f"{name}.json").write_text(json.dumps(record, indent=1))
    table = render(summary, args.a, args.b, args.pairs)
    (args.output / f"{name}.md").write_text(
        f"## A/B of the daily run of {args.day} on copies of {args.state}\n\n"
        f"Commits: {args.a} = {commits[args.a]}, {args.b} = {commits[args.b]}; `python -m benchmarks.ab`.\n\n{table}"
    )
    print(table)
    return 0 if all(r["success"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
