"""The static carbon-intensity table, and the one parser every zone name goes through.

The table always answers, so it is the fallback of every chain; a zone it does not know is
an error naming the nearest zones, never the world average in disguise. This module has no
HTTP dependency: the config validates `carbon.zone` with it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

WORLD_FALLBACK = 475.0  # gCO2e/kWh, IEA world average electricity (the usual fallback)


@dataclass(frozen=True, slots=True)
class StaticValue:
    grams_per_kwh: float
    source: str  # publisher of the figure
    year: int


# Keys: "gcp:<region>", "aws:<region>", "azure:<region>", or an ISO country code.
_CCF = "Cloud Carbon Footprint emissions factors"
_CCF_YEAR = 2022
_US_NERC = {  # CCF's EPA eGRID NERC-region factors, t/kWh -> g/kWh
    "RFC": 410.608,
    "SERC": 379.069,
    "WECC": 322.167,
    "MRO": 426.254,
    "TRE": 373.231,
}
STATIC: dict[str, StaticValue] = {
    # Google: region-carbon-info, 2024 grid carbon intensity (gCO2eq/kWh)
    **{
        f"gcp:{region}": StaticValue(value, "Google Cloud region-carbon-info", 2024)
        for region, value in {
            "us-central1": 412.72,
            "us-east1": 575.77,
            "us-east4": 323.05,
            "us-west1": 79.23,
            "us-west2": 169.28,
            "us-south1": 302.95,
            "northamerica-northeast1": 5.48,
            "europe-west1": 103.37,
            "europe-west2": 105.94,
            "europe-west3": 275.82,
            "europe-west4": 208.81,
            "europe-west6": 15.05,
            "europe-west9": 16.30,
            "europe-north1": 39.32,
            "europe-north2": 2.73,
            "europe-southwest1": 89.04,
            "asia-east1": 439.29,
            "asia-northeast1": 452.85,
            "asia-south1": 678.76,
            "asia-southeast1": 366.85,
            "australia-southeast1": 497.50,
            "southamerica-east1": 67.32,
        }.items()
    },
    # AWS and Azure: Cloud Carbon Footprint's coefficients (US regions by NERC region)
    **{
        f"aws:{region}": StaticValue(value, _CCF, _CCF_YEAR)
        for region, value in {
            "us-east-1": _US_NERC["SERC"],
            "us-east-2": _US_NERC["RFC"],
            "us-west-1": _US_NERC["WECC"],
            "us-west-2": _US_NERC["WECC"],
            "ca-central-1": 120.0,
            "sa-east-1": 61.7,
            "eu-west-1": 278.6,
            "eu-west-2": 225.0,
            "eu-west-3": 51.1,
            "eu-central-1": 311.0,
            "eu-north-1": 8.8,
            "eu-south-1": 213.4,
            "ap-south-1": 708.2,
            "ap-northeast-1": 465.8,
            "ap-northeast-2": 415.6,
            "ap-southeast-1": 408.0,
            "ap-southeast-2": 760.0,
        }.items()
    },
    **{
        f"azure:{region}": StaticValue(value, _CCF, _CCF_YEAR)
        for region, value in {
            "eastus": _US_NERC["SERC"],
            "eastus2": _US_NERC["SERC"],
            "centralus": _US_NERC["MRO"],
            "northcentralus": _US_NERC["RFC"],
            "southcentralus": _US_NERC["TRE"],
            "westus": _US_NERC["WECC"],
            "westus2": _US_NERC["WECC"],
            "westus3": _US_NERC["WECC"],
            "northeurope": 316.0,
            "westeurope": 390.0,
            "uksouth": 228.0,
            "ukwest": 228.0,
            "eastasia": 810.0,
            "southeastasia": 408.5,
            "centralindia": 708.0,
        }.items()
    },
    # Countries: Ember yearly electricity data, generation-based national intensity
    **{
        country: StaticValue(value, "Ember yearly electricity data", 2024)
        for country, value in {
            "IE": 255.9,
            "GB": 217.4,
            "FR": 41.5,
            "DE": 329.6,
            "SE": 35.4,
            "NL": 253.6,
            "IT": 284.6,
            "JP": 477.4,
            "SG": 497.1,
        }.items()
    },
    "world": StaticValue(WORLD_FALLBACK, "IEA world average (the common fallback)", 2023),
}


class UnknownZone(ValueError):
    """A zone that neither the static table nor a configured source serves."""

    def __init__(self, zone: str, nearest: list[str]) -> None:
        self.zone = zone
        self.nearest = nearest
        super().__init__(f"unknown zone {zone!r}; {self.hint}")

    @property
    def hint(self) -> str:
        """What to use instead, without repeating the zone (the config error shows it)."""
        return (
            f"nearest valid zones: {', '.join(self.nearest)} "
            "(`greenops-exporter regions` lists the static table's zones)"
        )


def parse_zone(text: str, served: Iterable[str] = ()) -> str:
    """The canonical spelling of a zone, matched case-insensitively against the static table
    and the zones the configured live sources serve (`served`); the table's spelling wins."""
    names: dict[str, str] = {}
    for name in (*STATIC, *served):
        names.setdefault(name.lower(), name)
    wanted = text.strip().lower()
    if wanted in names:
        return names[wanted]
    # compare whole names, then the region part alone ("us-east-1" -> "aws:us-east-1")
    close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.6)
    by_region: dict[str, list[str]] = {}
    for low in names:
        by_region.setdefault(low.rpartition(":")[2], []).append(low)
    for region in difflib.get_close_matches(wanted, list(by_region), n=3, cutoff=0.75):
        close.extend(low for low in by_region[region] if low not in close)
    if not close:  # nothing alike: still name the least unlike, never nothing
        close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.0)
    raise UnknownZone(text, [names[low] for low in close[:5]])
