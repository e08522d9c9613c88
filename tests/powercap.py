"""A powercap tree in the kernel's sysfs layout, in a directory the tests (and the demo) own.

Zones are nested as /sys/devices/virtual/powercap/intel-rapl has them
(`intel-rapl:0/intel-rapl:0:2`), with the flat links /sys/class/powercap adds beside them,
the `intel-rapl` control type and an `intel-rapl-mmio:0` duplicate of package 0, so the
reader meets everything a real node shows it. Counters are advanced in joules and wrap at
`max_energy_range_uj` as the hardware's do.
"""

from __future__ import annotations

import os
from pathlib import Path

# A Xeon's package range (the kernel reports it per zone); dram often has a smaller one.
PACKAGE_RANGE_UJ = 262143328850
DRAM_RANGE_UJ = 65712999613

INTEL_2S = {
    "intel-rapl:0": "package-0",
    "intel-rapl:0:0": "core",
    "intel-rapl:0:1": "uncore",
    "intel-rapl:0:2": "dram",
    "intel-rapl:1": "package-1",
    "intel-rapl:1:0": "dram",
    "intel-rapl:2": "psys",
}
AMD_2S = {
    "intel-rapl:0": "package-0",
    "intel-rapl:0:0": "core",
    "intel-rapl:1": "package-1",
    "intel-rapl:1:0": "core",
}


class FakePowercap:
    def __init__(self, root: Path, zones: dict[str, str], start_uj: int = 1_000_000) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}
        self.ranges: dict[str, int] = {}
        root.mkdir(parents=True, exist_ok=True)
        control = root / "intel-rapl"
        control.mkdir(exist_ok=True)
        (control / "enabled").write_text("1\n")
        for zone_id, name in zones.items():
            parts = zone_id.split(":")
            if len(parts) == 3:  # a sub-zone lives inside its package, linked flat beside it
                path = root / f"{parts[0]}:{parts[1]}" / zone_id
                path.mkdir(parents=True, exist_ok=True)
                os.symlink(path.relative_to(root), root / zone_id)
            else:
                path = root / zone_id
                path.mkdir(parents=True, exist_ok=True)
            limit = DRAM_RANGE_UJ if name == "dram" else PACKAGE_RANGE_UJ
            (path / "name").write_text(name + "\n")
            (path / "max_energy_range_uj").write_text(f"{limit}\n")
            (path / "enabled").write_text("1\n")
            self.paths[zone_id] = path
            self.ranges[zone_id] = limit
            self.set(zone_id, start_uj)
        mmio = root / "intel-rapl-mmio:0"
        mmio.mkdir(exist_ok=True)
        (mmio / "name").write_text("package-0\n")
        (mmio / "max_energy_range_uj").write_text(f"{PACKAGE_RANGE_UJ}\n")
        (mmio / "energy_uj").write_text("0\n")

    def read(self, zone_id: str) -> int:
        return int((self.paths[zone_id] / "energy_uj").read_text())

    def set(self, zone_id: str, uj: int) -> None:
        path = self.paths[zone_id] / "energy_uj"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{uj}\n")
        os.replace(tmp, path)  # a reader never sees half a number

    def advance(self, zone_id: str, joules: float) -> None:
        """Add energy the way the hardware does: wrapping past max_energy_range_uj."""
        limit = self.ranges[zone_id]
        value = self.read(zone_id) + round(joules * 1e6)
        self.set(zone_id, value - limit if value > limit else value)
