"""The dcgm backend on pages operators published from live systems (`tests/fixtures/dcgm/real/`,
each file's first line says where): every expected value below is read off the page itself.
Ratios and watts are compared to the page's printed digits (1e-9 relative: a float's
round trip), MiB to whole bytes."""

from __future__ import annotations

import pytest

from dcgmpages import FIXTURES, MIB
from greenops_exporter.backends.base import Capability, Reading, ReadPlan
from greenops_exporter.backends.dcgm_page import GpuPage, device_info, parse_page, reading

REAL = FIXTURES / "real"
EXACT = 1e-9


def real_page(name: str) -> str:
    """The page as published, without the `# source:` line the fixture adds."""
    lines = (REAL / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("# source:")) + "\n"


def gpus(name: str) -> list[GpuPage]:
    return list(parse_page(real_page(name)).values())


def read_all(name: str) -> list[Reading]:
    return [reading(gpu, 1.0, ReadPlan()) for gpu in gpus(name)]


A100_DOCS = "07-a100-mig-whole-and-instance-nvdocs.txt"


def test_whole_gpu_series_describe_the_gpu_beside_its_instances() -> None:
    """NVIDIA's own docs sample: an A100 in MIG mode with whole-GPU series and one 1g.5gb
    instance. The whole-GPU values are the GPU's; the instance's are the instance's."""
    [gpu] = gpus(A100_DOCS)
    [r] = read_all(A100_DOCS)
    assert gpu.profiles == {13: "1g.5gb"}
    assert r.utilization_gpu == pytest.approx(0.995630, rel=EXACT)  # GR_ENGINE_ACTIVE
    assert r.gpm is not None
    assert r.gpm.graphics_active == pytest.approx(0.995630, rel=EXACT)
    assert r.gpm.tensor_active == pytest.approx(0.929260, rel=EXACT)
    assert r.gpm.dram_active == pytest.approx(0.690789, rel=EXACT)
    assert r.gpm.pcie_tx_bytes_per_second == 33011804
    assert r.gpm.pcie_rx_bytes_per_second == 97863601
    assert r.memory_used_bytes == 4845 * MIB  # FB_USED, no FB_RESERVED on this page
    assert r.memory_total_bytes == (4845 + 35690) * MIB
    assert r.power_watts == pytest.approx(409.692, rel=EXACT)
    assert r.energy_counter_joules == pytest.approx(319159.391, rel=EXACT)
    # the instance keeps its own value
    [instance] = r.mig_devices
    assert (instance.gpu_instance_id, instance.profile) == (13, "1g.5gb")
    assert instance.sm_active == pytest.approx(0.995687, rel=EXACT)
    info = device_info(gpu)
    assert info.supports(Capability.MEMORY) and info.mig_enabled
    assert info.memory_total_bytes == (4845 + 35690) * MIB
