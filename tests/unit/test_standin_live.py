"""The stand-in played live for `make bench`: rows follow the clock, counters stay monotonic
across passes, and the calls nvitop-exporter makes answer with recorded values or
NOT_SUPPORTED."""

from __future__ import annotations

import itertools

import pytest

from fakenvml import FIXTURES, FakeNvml, load_trace
from fakenvml_live import LiveFakeNvml, idle_rows, phase_rows

TRACE = load_trace(FIXTURES / "trace_a2.jsonl")


def live(phase: str, pid: int | None = None) -> tuple[LiveFakeNvml, list[float], object]:
    now = [100.0]
    rows = idle_rows(TRACE) if phase == "idle" else phase_rows(TRACE, phase)
    fake = LiveFakeNvml(TRACE, rows, pid=pid, clock=lambda: now[0])
    fake.nvmlInit()
    return fake, now, fake.nvmlDeviceGetHandleByIndex(0)


def test_idle_rows_hold_no_process_and_busy_rows_one() -> None:
    idle = idle_rows(TRACE)
    assert len(idle) == 32  # the first process appears at row 32 of trace_a2
    assert all(not TRACE[r]["procs"] for r in idle)
    busy = phase_rows(TRACE, "compute_matmul_bf16")
    assert all(len(TRACE[r]["procs"]) == 1 for r in busy)


def test_the_row_follows_the_clock_and_loops() -> None:
    fake, now, _ = live("compute_matmul_bf16")
    rows = fake.rows
    assert fake.cursor == rows[0]
    now[0] += 0.55  # 10 Hz recording: the sixth row
    assert fake.cursor == rows[5]
    now[0] += fake.loop_seconds  # one pass later: the same row, next pass
    assert fake.position() == (1, rows[5])
    fake.cursor = 0  # ignored: the clock decides
    assert fake.cursor == rows[5]


def test_energy_counter_is_monotonic_across_passes_at_the_recorded_rate() -> None:
    fake, now, handle = live("compute_matmul_bf16")
    readings = []
    for _ in range(60):  # five passes of the 11.9 s loop, once a second
        readings.append(fake.nvmlDeviceGetTotalEnergyConsumption(handle))
        now[0] += 1.0
    assert all(b > a for a, b in itertools.pairwise(readings))
    rows = fake.rows
    recorded = (TRACE[rows[-1]]["energy_mj"] - TRACE[rows[0]]["energy_mj"]) / (
        TRACE[rows[-1]]["t"] - TRACE[rows[0]]["t"]
    )
    played = (readings[-1] - readings[0]) / 59.0
    assert played == pytest.approx(recorded, rel=0.05)  # loop seams shift it by a row or so
    # the field value that carries the same counter moves with it
    values = fake.nvmlDeviceGetFieldValues(handle, [fake.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION])
    assert values[0].value.ullVal == fake.nvmlDeviceGetTotalEnergyConsumption(handle)


def test_power_samples_are_served_once_in_order_at_50_hz_across_passes() -> None:
    fake, now, handle = live("idle")
    seen, stamps = 0, []
    for _ in range(30):  # more than six passes of the 4.5 s idle loop
        now[0] += 1.0
        _kind, samples = fake.nvmlDeviceGetSamples(handle, fake.NVML_TOTAL_POWER_SAMPLES, seen)
        stamps += [s.timeStamp for s in samples]
        seen = stamps[-1]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert len(stamps) / 30 == pytest.approx(50, rel=0.05)  # the driver's 20 ms period
    with pytest.raises(fake.NVMLError) as nothing_new:
        fake.nvmlDeviceGetSamples(handle, fake.NVML_TOTAL_POWER_SAMPLES, seen)
    assert nothing_new.value.value == fake.NVML_ERROR_NOT_FOUND


def test_the_recorded_process_is_replaced_by_a_live_pid() -> None:
    fake, _now, handle = live("compute_matmul_bf16", pid=4242)
    assert [p.pid for p in fake.nvmlDeviceGetComputeRunningProcesses(handle)] == [4242]
    recorded = {p["pid"] for r in fake.rows for p in TRACE[r]["procs"]}
    assert 4242 not in recorded


def test_calls_nvitop_makes_answer_recorded_or_not_supported() -> None:
    fake = FakeNvml(trace=TRACE)
    fake.nvmlInitWithFlags(0)
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlSystemGetCudaDriverVersion() == 13000  # probe.json
    assert fake.nvmlDeviceGetPowerManagementLimit(handle) == 700_000
    assert fake.nvmlDeviceIsMigDeviceHandle(handle) == 0
    for unrecorded in (
        lambda: fake.nvmlDeviceGetPcieThroughput(handle, fake.NVML_PCIE_UTIL_TX_BYTES),
        lambda: fake.nvmlDeviceGetEncoderUtilization(handle),
        lambda: fake.nvmlDeviceGetDecoderUtilization(handle),
        lambda: fake.nvmlDeviceGetFanSpeed(handle),
        lambda: fake.nvmlDeviceGetGraphicsRunningProcesses(handle),
    ):
        with pytest.raises(fake.NVMLError) as error:
            unrecorded()
        assert error.value.value == fake.NVML_ERROR_NOT_SUPPORTED
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 1


def test_the_cost_table_charges_what_it_lists() -> None:
    fake = FakeNvml(trace=TRACE)
    fake.load_costs()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    fake.nvmlDeviceGetTotalEnergyConsumption(handle)  # 4.0 ms in h100.json
    fake.nvmlDeviceGetFieldValues(
        handle, [fake.NVML_FI_DEV_POWER_INSTANT, fake.NVML_FI_DEV_PCIE_COUNT_TX_BYTES]
    )  # 0.04 + 0.12 + the call's 0.003 default
    charged = dict(fake.charged)
    charged.pop("nvmlDeviceGetHandleByIndex")
    assert fake.cost_ms(charged) == pytest.approx(4.0 + 0.04 + 0.12 + 0.003)
