"""Per-GPU carbon and cost accounts, fed once per collection cycle with the intensity in
force at that moment (never an average applied afterwards)."""

from __future__ import annotations

from dataclasses import dataclass, field

from greenops_exporter.analysis.bottleneck import BottleneckClass
from greenops_exporter.analysis.carbon import (
    embodied_grams,
    energy_cost,
    operational_grams,
    rental_cost,
)

WASTE_CLASSES = (BottleneckClass.IDLE, BottleneckClass.OVERHEAD)


@dataclass(frozen=True, slots=True)
class FootprintSettings:
    """Everything per GPU model is resolved to this GPU's numbers before it gets here."""

    pue: float = 1.0
    embodied_kg: float = 164.0  # NVIDIA's H100 product carbon footprint
    lifetime_years: float = 4.0
    energy_price_per_kwh: float = 0.0
    rental_price_per_hour: float = 0.0
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class CycleFootprint:
    operational_grams: float
    embodied_grams: float
    energy_cost: float
    rental_cost: float

    @property
    def cost(self) -> float:
        return self.energy_cost + self.rental_cost

    @property
    def grams(self) -> float:
        return self.operational_grams + self.embodied_grams

    def share(self, ratio: float) -> CycleFootprint:
        return CycleFootprint(
            self.operational_grams * ratio,
            self.embodied_grams * ratio,
            self.energy_cost * ratio,
            self.rental_cost * ratio,
        )


@dataclass
class Footprint:
    settings: FootprintSettings
    operational_grams: float = 0.0
    embodied_grams: float = 0.0
    energy_cost: float = 0.0
    rental_cost: float = 0.0
    waste_cost: dict[BottleneckClass, float] = field(
        default_factory=lambda: dict.fromkeys(WASTE_CLASSES, 0.0)
    )

    def update(
        self, joules: float, seconds: float, grams_per_kwh: float, cls: BottleneckClass | None
    ) -> CycleFootprint:
        s = self.settings
        cycle = CycleFootprint(
            operational_grams(joules, s.pue, grams_per_kwh),
            embodied_grams(s.embodied_kg, s.lifetime_years, seconds),
            energy_cost(joules, s.pue, s.energy_price_per_kwh),
            rental_cost(seconds, s.rental_price_per_hour),
        )
        self.operational_grams += cycle.operational_grams
        self.embodied_grams += cycle.embodied_grams
        self.energy_cost += cycle.energy_cost
        self.rental_cost += cycle.rental_cost
        if cls in self.waste_cost:
            self.waste_cost[cls] += cycle.cost
        return cycle
