"""Benchmark: how long `report` takes on a 30-day, 16 x 8 GPU fleet at 5-minute
resolution, and how many queries it sends, against Debian's Prometheus.

The fleet is the suite's (tests/reportfleet.py) at bench size: written by the exporter's
own encoder, backfilled with promtool, served by a Prometheus on 127.0.0.1. Prints the
figures; asserts nothing beyond the report reconciling and matching the generator's totals.

    python bench/bench_report.py [--nodes 16] [--days 30] [--resolution 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from backfill import build_tsdb, serve_tsdb
from greenops_exporter.cli.main import main as cli
from reportfleet import START, FleetSpec, write_fleet


def report(url: str, spec: FleetSpec, *args: str) -> tuple[float, dict]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli(
            [
                "report",
                "--prometheus",
                url,
                "--from",
                str(START),
                "--to",
                str(spec.end),
                "--format",
                "json",
                *args,
            ]
        )
    seconds = time.perf_counter() - started
    assert code == 0, code
    return seconds, json.loads(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=300, help="seconds between samples")
    parser.add_argument("--keep", type=Path, help="keep the TSDB here (and reuse it)")
    args = parser.parse_args()
    spec = FleetSpec(nodes=args.nodes, days=args.days, step_seconds=args.resolution)
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    tsdb = args.keep or work / "tsdb"
    totals = tsdb / "fleet-totals.json"  # the generator's, kept beside a kept TSDB
    try:
        if totals.exists():
            fleet = json.loads(totals.read_text())
            print(f"reusing {tsdb}: {fleet['series']} series, {fleet['samples']:,} samples")
        else:
            started = time.perf_counter()
            files, truth = write_fleet(spec, work / "om")
            written = time.perf_counter() - started
            print(
                f"fleet: {spec.nodes} x {spec.gpus_per_node} GPUs, {spec.days} days at "
                f"{spec.step_seconds} s: {truth.series} series, {truth.samples:,} samples, "
                f"written in {written:.1f} s",
                flush=True,
            )
            started = time.perf_counter()
            build_tsdb(files, tsdb)
            took = time.perf_counter() - started
            print(
                f"promtool backfill: {took:.1f} s ({truth.samples / took:,.0f} samples/s)",
                flush=True,
            )
            shutil.rmtree(work / "om")
            fleet = {**truth.fleet, "series": truth.series, "samples": truth.samples}
            totals.write_text(json.dumps(fleet))
        with serve_tsdb(tsdb, work, ready_seconds=300) as url:
            expected = fleet["energy_cost"] + fleet["rental_cost"]
            for step, by in (("1h", "namespace"), ("1h", "pod"), ("5m", "namespace")):
                seconds, r = report(url, spec, "--step", step, "--by", by)
                error = abs(r["fleet"]["cost"] - expected)
                print(
                    f"report --step {step} --by {by}: {len(r['groups'])} groups, "
                    f"{r['queries']} queries, {seconds:.1f} s wall; check ok "
                    f"{r['check']['ok']}; fleet cost {r['fleet']['cost']:.2f} vs the "
                    f"generator's {expected:.2f} (|diff| {error:.2g})",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a --keep TSDB stays
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
