"""Where each zone of the carbon table lies, as CodeCarbon's emissions.csv names places.

CodeCarbon's own dashboard reads `country_iso_code` as a string and fails on an empty cell,
so every zone the table knows has a country. Google's regions take CodeCarbon 3.3.2's own
cloud table (data/cloud/impact.csv: its country name, ISO code, and state or else city);
AWS and Azure regions, which that table lacks, and the country zones take the country names
of CodeCarbon's global_energy_mix.json. `world` is no country: it is written as the World
Bank's aggregate code WLD, "World", so that the row still loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Place:
    country_iso_code: str  # ISO 3166 alpha-3, as CodeCarbon writes it
    country_name: str
    region: str = ""  # state, else city; "" for a country zone (CodeCarbon leaves it empty)


COUNTRIES = {  # the table's ISO alpha-2 keys -> CodeCarbon's alpha-3 and name
    "IE": Place("IRL", "Ireland"),
    "GB": Place("GBR", "United Kingdom"),
    "FR": Place("FRA", "France"),
    "DE": Place("DEU", "Germany"),
    "SE": Place("SWE", "Sweden"),
    "NL": Place("NLD", "Netherlands"),
    "IT": Place("ITA", "Italy"),
    "JP": Place("JPN", "Japan"),
    "SG": Place("SGP", "Singapore"),
    "world": Place("WLD", "World"),
}

_US = ("USA", "United States")  # global_energy_mix.json's name (impact.csv says "USA")
CLOUD = {
    # Google: CodeCarbon 3.3.2's impact.csv rows (europe-north2 is not in it: Google's
    # region page puts it in Stockholm)
    "gcp:us-central1": Place("USA", "USA", "Iowa"),
    "gcp:us-east1": Place("USA", "USA", "South Carolina"),
    "gcp:us-east4": Place("USA", "USA", "Northern Virginia"),
    "gcp:us-west1": Place("USA", "USA", "Oregon"),
    "gcp:us-west2": Place("USA", "USA", "California"),
    "gcp:us-south1": Place("USA", "USA", "Dallas"),
    "gcp:northamerica-northeast1": Place("CAN", "Canada", "Quebec"),
    "gcp:europe-west1": Place("BEL", "Belgium", "St. Ghislain"),
    "gcp:europe-west2": Place("GBR", "United Kingdom", "England"),
    "gcp:europe-west3": Place("DEU", "Germany", "Frankfurt"),
    "gcp:europe-west4": Place("NLD", "Netherlands", "Eemshaven"),
    "gcp:europe-west6": Place("CHE", "Switzerland", "Zurich"),
    "gcp:europe-west9": Place("FRA", "France", "Paris"),
    "gcp:europe-north1": Place("FIN", "Finland", "Hamina"),
    "gcp:europe-north2": Place("SWE", "Sweden", "Stockholm"),
    "gcp:europe-southwest1": Place("ESP", "Spain", "Madrid"),
    "gcp:asia-east1": Place("TWN", "Taiwan", "Changhua County"),
    "gcp:asia-northeast1": Place("JPN", "Japan", "Tokyo"),
    "gcp:asia-south1": Place("IND", "India", "Mumbai"),
    "gcp:asia-southeast1": Place("SGP", "Singapore", "Jurong West"),
    "gcp:australia-southeast1": Place("AUS", "Australia", "Sydney"),
    "gcp:southamerica-east1": Place("BRA", "Brazil", "Sao Paulo"),
    # AWS: the providers' published region locations
    "aws:us-east-1": Place(*_US, "Virginia"),
    "aws:us-east-2": Place(*_US, "Ohio"),
    "aws:us-west-1": Place(*_US, "California"),
    "aws:us-west-2": Place(*_US, "Oregon"),
    "aws:ca-central-1": Place("CAN", "Canada", "Quebec"),
    "aws:sa-east-1": Place("BRA", "Brazil", "Sao Paulo"),
    "aws:eu-west-1": Place("IRL", "Ireland", "Dublin"),
    "aws:eu-west-2": Place("GBR", "United Kingdom", "London"),
    "aws:eu-west-3": Place("FRA", "France", "Paris"),
    "aws:eu-central-1": Place("DEU", "Germany", "Frankfurt"),
    "aws:eu-north-1": Place("SWE", "Sweden", "Stockholm"),
    "aws:eu-south-1": Place("ITA", "Italy", "Milan"),
    "aws:ap-south-1": Place("IND", "India", "Mumbai"),
    "aws:ap-northeast-1": Place("JPN", "Japan", "Tokyo"),
    "aws:ap-northeast-2": Place("KOR", "South Korea", "Seoul"),
    "aws:ap-southeast-1": Place("SGP", "Singapore", "Singapore"),
    "aws:ap-southeast-2": Place("AUS", "Australia", "Sydney"),
    # Azure
    "azure:eastus": Place(*_US, "Virginia"),
    "azure:eastus2": Place(*_US, "Virginia"),
    "azure:centralus": Place(*_US, "Iowa"),
    "azure:northcentralus": Place(*_US, "Illinois"),
    "azure:southcentralus": Place(*_US, "Texas"),
    "azure:westus": Place(*_US, "California"),
    "azure:westus2": Place(*_US, "Washington"),
    "azure:westus3": Place(*_US, "Arizona"),
    "azure:northeurope": Place("IRL", "Ireland", "Dublin"),
    "azure:westeurope": Place("NLD", "Netherlands", "Amsterdam"),
    "azure:uksouth": Place("GBR", "United Kingdom", "London"),
    "azure:ukwest": Place("GBR", "United Kingdom", "Cardiff"),
    "azure:eastasia": Place("HKG", "Hong Kong", "Hong Kong"),
    "azure:southeastasia": Place("SGP", "Singapore", "Singapore"),
    "azure:centralindia": Place("IND", "India", "Pune"),
}


def where(zone: str) -> dict[str, str]:
    """The CSV's place columns for a zone; a zone only a live source serves (an
    Electricity Maps zone such as US-CAL-CISO) keeps its country part when it has one."""
    provider, _, region = zone.partition(":")
    place = CLOUD.get(zone) or COUNTRIES.get(zone) or COUNTRIES.get(zone.split("-")[0])
    cells = {
        "country_iso_code": place.country_iso_code if place else "",
        "country_name": place.country_name if place else "",
        "region": place.region if place else "",
        "on_cloud": "N",
        "cloud_provider": "",
        "cloud_region": "",
    }
    if region and provider in ("gcp", "aws", "azure"):
        cells |= {"cloud_provider": provider, "cloud_region": region, "on_cloud": "Y"}
    return cells
