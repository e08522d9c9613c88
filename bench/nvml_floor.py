"""Where a real GPU's exporter CPU goes, in one command (under 4 minutes): run it on a GPU.

The cost table the stand-in burns (tests/fixtures/nvml_costs/h100.json) was measured per
call in tight loops, and under-states real processes by about 2.7 ms/s (issue 18). This
measures, with psutil's user + system time of each process:

  1. a Python that imported pynvml and sleeps, and 2. one that also called nvmlInit();
  3. greenops-exporter's per-second NVML call set (its real nvml backend's `read` of every
     GPU at the defaults: energy counter every 30 s) made once a second, against the same
     set made back to back (the table's method), per set;
  4. `greenops-exporter serve` and nvitop-exporter (where installed) side by side at 1 s:
     a window with no scrapes, then one scraped once a second.

    PYTHONPATH=exporter python bench/nvml_floor.py [--seconds 60] [--json out.json]
    python bench/nvml_floor.py --standin   # the same on the stand-in, to check the script

It needs nvidia-ml-py, aiohttp, prometheus-client, psutil, pyyaml and pydantic, and runs
from the source tree. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from serve_bench import Result, Running, window  # noqa: E402

# Child programs. PRELUDE makes `import pynvml` the stand-in where --standin asks for it.
PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = [{root!r} + "/exporter", {root!r} + "/bench"]
    if os.environ.get("NVML_FLOOR_STANDIN"):
        import standin
        sys.modules["pynvml"] = standin.make_standin(1, "idle", None)
    """
)
IMPORT_ONLY = "import pynvml\nprint('ready', flush=True)\ntime.sleep(1e6)\n"
INIT_ONLY = "import pynvml\npynvml.nvmlInit()\nprint('ready', flush=True)\ntime.sleep(1e6)\n"
CALL_SET = textwrap.dedent(
    """
    import json
    from greenops_exporter.backends.base import ReadPlan
    from greenops_exporter.backends.nvml import NvmlBackend
    backend = NvmlBackend()
    devices = backend.open()
    anchor, plain = ReadPlan(), ReadPlan(energy_counter=False)
    def one_second(tick):
        for d in range(len(devices)):
            backend.read(d, anchor if tick % 30 == 0 else plain)
    for tick in range(3):  # warm: probes, first GPM samples
        one_second(tick); time.sleep(0.2)
    seconds, loops = {seconds}, {loops}
    cpu0 = time.process_time(); next_tick = time.monotonic()
    for tick in range(int(seconds)):
        one_second(tick)
        next_tick += 1.0
        time.sleep(max(next_tick - time.monotonic(), 0))
    paced = (time.process_time() - cpu0) / int(seconds)
    cpu0 = time.process_time()
    for tick in range(loops):
        one_second(tick)
    tight = (time.process_time() - cpu0) / loops
    print(json.dumps({{"gpus": len(devices), "paced_ms": paced * 1e3, "tight_ms": tight * 1e3}}))
    """
)


def child_env(standin: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    env["PYTHONPATH"] = str(ROOT / "exporter")
    if standin:
        env["NVML_FLOOR_STANDIN"] = "1"
    return env


def sleepers(seconds: float, standin: bool) -> dict[str, dict[str, float]]:
    """Steps 1 and 2 at once: CPU per second and RSS of each sleeping process."""
    procs = {}
    for name, body in (("imported pynvml", IMPORT_ONLY), ("called nvmlInit()", INIT_ONLY)):
        code = PRELUDE.format(root=str(ROOT)) + body
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=child_env(standin), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        procs[name] = proc
    time.sleep(1.0)
    before = {n: psutil.Process(p.pid).cpu_times() for n, p in procs.items()}
    time.sleep(seconds)
    out = {}
    for name, proc in procs.items():
        ps = psutil.Process(proc.pid)
        t0, t1 = before[name], ps.cpu_times()
        out[name] = {
            "cpu_ms_s": max((t1.user + t1.system - t0.user - t0.system) * 1e3 / seconds, 0.0),
            "rss_mib": ps.memory_info().rss / 2**20,
        }
        proc.kill()
        proc.wait()
    return out


def call_set(seconds: float, loops: int, standin: bool) -> dict[str, float]:
    """Step 3: one process, paced then tight; CPU per set of reads of all GPUs."""
    code = PRELUDE.format(root=str(ROOT)) + CALL_SET.format(seconds=seconds, loops=loops)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(standin),
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def side_by_side(seconds: float, standin: bool, warmup: float) -> list[Result]:
    """Step 4: both exporters at once, a window unscraped, then one scraped once a second."""
    exporters = ["greenops"]
    try:
        import nvitop_exporter  # noqa: F401

        exporters.append("nvitop")
    except ImportError:
        print("nvitop-exporter is not installed: step 4 runs greenops-exporter alone")
    results = [Result(e, 1, "as found") for e in exporters]
    with tempfile.TemporaryDirectory() as tmp:
        running = [Running(e, 1, "idle", os.getpid(), Path(tmp), standin) for e in exporters]
        try:
            time.sleep(warmup)
            window(running, seconds / 2, False, results)
            window(running, seconds / 2, True, results)
            for r, result in zip(running, results, strict=True):
                result.rss = r.ps.memory_info().rss
        finally:
            for r in running:
                r.stop()
    return results


def summary(results: list[Result]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        row: dict[str, Any] = {"exporter": r.exporter, "rss_mib": r.rss / 2**20}
        for mode, windows in r.windows.items():
            row[f"cpu_ms_s_{mode}"] = statistics.median(w.cpu * 1e3 / w.seconds for w in windows)
        ordered = sorted(r.latencies)
        row["scrape_p50_ms"] = ordered[len(ordered) // 2] * 1e3
        row["series"] = r.series
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="step 4's two windows")
    parser.add_argument("--standin", action="store_true", help="the stand-in, not a GPU")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before step 4")
    args = parser.parse_args()
    started = time.monotonic()
    where = "the stand-in (trace_a2, H100 cost table)" if args.standin else "this machine's GPUs"
    print(f"nvml_floor on {where}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    figures: dict[str, Any] = {"standin": args.standin, "python": sys.version.split()[0]}
    figures["sleepers"] = sleepers(args.seconds / 2, args.standin)
    for name, f in figures["sleepers"].items():
        print(f"  {name:<20} CPU {f['cpu_ms_s']:.2f} ms/s   RSS {f['rss_mib']:.1f} MiB")
    figures["call_set"] = call_set(args.seconds / 2, 200, args.standin)
    c = figures["call_set"]
    print(
        f"  call set of {c['gpus']} GPU(s): once a second {c['paced_ms']:.2f} ms/s, back to "
        f"back {c['tight_ms']:.2f} ms per set (paced / tight {c['paced_ms'] / c['tight_ms']:.2f})"
    )
    figures["exporters"] = summary(side_by_side(args.seconds, args.standin, args.warmup))
    for row in figures["exporters"]:
        print(
            f"  {row['exporter']:<9} CPU no scrapes {row['cpu_ms_s_none']:.2f} ms/s, scraped "
            f"1/s {row['cpu_ms_s_scraped']:.2f} ms/s, RSS {row['rss_mib']:.1f} MiB, "
            f"scrape p50 {row['scrape_p50_ms']:.2f} ms, {row['series']} series"
        )
    figures["seconds"] = time.monotonic() - started
    print(f"({figures['seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
