"""One typed config tree: YAML file, then GREENOPS_* environment variables, then flags.

Validation is pydantic's (unknown keys forbidden), so every error can name its key path and
where its value came from (config_sources); the CLI turns a ConfigError into exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from greenops_exporter.analysis.bottleneck import Thresholds
from greenops_exporter.analysis.waste import WasteSettings
from greenops_exporter.backends.base import ProcessUtilizationPolicy
from greenops_exporter.config.errors import (
    ConfigError as ConfigError,  # re-exported: every command catches it
)
from greenops_exporter.config.sources import (
    CONFIG_ENV as CONFIG_ENV,  # re-exported: the CLI's names
)
from greenops_exporter.config.sources import deep_merge, file_and_environment
from greenops_exporter.config.sources import dotted_overrides as dotted_overrides
from greenops_exporter.config.sources import env_overrides as env_overrides
from greenops_exporter.config.sources import secret as secret  # re-exported: where secrets are read
from greenops_exporter.config.validation import format_validation_error
from greenops_exporter.sources.carbon_static import UnknownZone, parse_zone

PUE_MIN, PUE_MAX = 1.0, 3.0  # carbon.pue's range, and the carbon commands' --pue


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Section):
    listen_address: str = ":9479"
    web_config_file: Path | None = None  # exporter-toolkit format: TLS and basic auth
    max_concurrent_requests: int = Field(default=256, ge=1, le=10000)

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_listen_address(value)
        return value


class SimConfig(_Section):
    scenario: Path | None = None  # None: the embedded demo scenario
    seed: int | None = None  # None: the scenario's own seed


class ReplayConfig(_Section):
    files: list[Path] = Field(default_factory=list)
    speed: float = Field(default=1.0, gt=0)
    loop: bool = True


class DcgmConfig(_Section):
    url: str = Field(default="http://127.0.0.1:9400/metrics", pattern=r"^https?://\S+$")
    # the whole page, below the read deadline; None: 0.5 s, or 3/4 of the deadline if shorter
    timeout_seconds: float | None = Field(default=None, gt=0)
    kubernetes: bool | None = None  # dcgm-exporter's pod mapping; None: from the page


class BackendConfig(_Section):
    kind: Literal["auto", "nvml", "sim", "replay", "dcgm"] = "auto"  # auto never picks dcgm
    sim: SimConfig = Field(default_factory=SimConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    dcgm: DcgmConfig = Field(default_factory=DcgmConfig)

    @model_validator(mode="after")
    def _replay_needs_files(self) -> BackendConfig:
        if self.kind == "replay" and not self.replay.files:
            raise ValueError("replay.files: the replay backend needs at least one recording")
        return self


class CollectConfig(_Section):
    interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    device_timeout_seconds: float | None = Field(default=None, gt=0)  # None: 0.8 x interval
    energy_anchor_seconds: float = Field(default=30.0, ge=0)
    process_utilization: ProcessUtilizationPolicy = ProcessUtilizationPolicy.WHEN_SHARED
    backend_retry_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _timeout_within_the_interval(self) -> CollectConfig:
        """A read deadline past the interval would let a hung GPU delay the next cycle."""
        timeout = self.device_timeout_seconds
        if timeout is not None and timeout >= self.interval_seconds:
            raise ValueError(
                f"device_timeout_seconds: {timeout:g} s must be shorter than the collection "
                f"interval collect.interval_seconds ({self.interval_seconds:g} s)"
            )
        return self

    @property
    def timeout(self) -> float:
        if self.device_timeout_seconds is not None:
            return self.device_timeout_seconds
        return 0.8 * self.interval_seconds


_T = Thresholds()
Ratio = Annotated[float, Field(ge=0, le=1)]  # a share of the interval or of the GPU's peak


class BottleneckConfig(_Section):
    """`analysis.bottleneck`, checked here (Thresholds is a plain dataclass): the ratios are
    shares (0..1), so -1 or 50 would switch a class off or on for every GPU."""

    memory_dram_active: Ratio = _T.memory_dram_active
    compute_sm_active: Ratio = _T.compute_sm_active
    compute_tensor_active: Ratio = _T.compute_tensor_active
    io_bytes_per_second: float = Field(default=_T.io_bytes_per_second, ge=0)
    io_sm_active_max: Ratio = _T.io_sm_active_max
    busy_activity: Ratio = _T.busy_activity
    basic_memory_utilization: Ratio = _T.basic_memory_utilization
    basic_compute_utilization: Ratio = _T.basic_compute_utilization
    basic_io_memory_utilization_max: Ratio = _T.basic_io_memory_utilization_max

    def thresholds(self) -> Thresholds:
        return Thresholds(**self.model_dump())


class AnalysisConfig(_Section):
    bottleneck: BottleneckConfig = Field(default_factory=BottleneckConfig)
    stranded_after_seconds: float = Field(default=600.0, ge=0)
    underutilization_target: float = Field(default=0.8, gt=0, le=1)
    underutilization_window_seconds: float = Field(default=300.0, gt=0)
    identity_expire_seconds: float = Field(default=300.0, gt=0)
    advice_window_seconds: float = Field(default=3600.0, gt=0)

    def waste(self) -> WasteSettings:
        return WasteSettings(
            stranded_after_seconds=self.stranded_after_seconds,
            underutilization_target=self.underutilization_target,
            underutilization_window_seconds=self.underutilization_window_seconds,
        )


class KubernetesConfig(_Section):
    pod_resources: Literal["auto", "on", "off"] = "auto"  # auto: when the socket exists
    pod_resources_socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    poll_seconds: float = Field(default=10.0, gt=0)
    timeout_seconds: float = Field(default=2.0, gt=0)
    cgroups: bool = True
    proc_root: Path = Path("/proc")


class InferenceSourceConfig(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["vllm", "triton", "tgi", "prometheus"]
    url: str = Field(pattern=r"^https?://")
    gpus: Literal["auto"] | list[int | str] = "auto"
    interval_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float = Field(default=2.0, gt=0)
    # kind "prometheus": which counters mean what
    requests_metric: str | None = None
    prompt_tokens_metric: str | None = None
    generation_tokens_metric: str | None = None
    model_label: str | None = None
    matchers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _generic_needs_a_counter(self) -> InferenceSourceConfig:
        if self.kind == "prometheus" and not self.requests_metric:
            raise ValueError("requests_metric: kind prometheus needs the name of a counter")
        return self


class InferenceConfig(_Section):
    window_seconds: float = Field(default=60.0, gt=0)
    sources: list[InferenceSourceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> InferenceConfig:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError("sources: names must be unique")
        return self


class CarbonSourceConfig(_Section):
    # unique among carbon.sources: the `name` label of the greenops_source_* series
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["electricitymaps", "watttime", "uk", "carbon_aware_sdk"]
    url: str = Field(pattern=r"^https?://")
    zone: str | None = None  # Electricity Maps zone, WattTime region, Carbon Aware location
    region_id: int | None = Field(default=None, ge=1, le=17)  # UK regional API
    token: SecretStr | None = None  # prefer token_file or token_env
    token_file: Path | None = None
    token_env: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    interval_seconds: float = Field(default=300.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)

    @property
    def served_zone(self) -> str | None:
        """The zone it answers for: `zone`, or GB / GB-{region_id} for the UK API."""
        if self.kind == "uk":
            return f"GB-{self.region_id}" if self.region_id else "GB"
        return self.zone

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("kind"), str):
            return {"name": data["kind"], **data}
        return data

    @model_validator(mode="after")
    def _needs(self) -> CarbonSourceConfig:
        if self.kind in ("electricitymaps", "watttime", "carbon_aware_sdk") and not self.zone:
            raise ValueError(f"zone: the {self.kind} source needs a zone (or region/location)")
        if self.kind == "watttime" and not self.username:
            raise ValueError("username: the watttime source needs a username")
        return self


class EmbodiedConfig(_Section):
    kg: float = Field(gt=0)
    lifetime_years: float = Field(default=4.0, gt=0)


def _default_embodied() -> dict[str, EmbodiedConfig]:
    # NVIDIA's H100 product carbon footprint; used for models without their own figure
    return {"default": EmbodiedConfig(kg=164.0, lifetime_years=4.0)}


class CarbonConfig(_Section):
    sources: list[CarbonSourceConfig] = Field(default_factory=list)  # before zone: it checks
    zone: str = "world"  # static table key: gcp:<region>, aws:<region>, azure:<region>, GB…
    intensity_grams_per_kwh: float | None = Field(default=None, ge=0)  # a fixed override
    pue: float = Field(default=1.0, ge=PUE_MIN, le=PUE_MAX)
    max_age_seconds: float = Field(default=3600.0, gt=0)
    embodied: dict[str, EmbodiedConfig] = Field(default_factory=_default_embodied)
    greenest_window_seconds: float = Field(default=4 * 3600.0, gt=0)
    greenest_within_seconds: float = Field(default=24 * 3600.0, gt=0)

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str, info: ValidationInfo) -> str:
        """The static table's key or a zone a configured source serves (any case), as
        `--zone` takes: never the world average under another zone's name."""
        served = [s.served_zone for s in info.data.get("sources", [])]
        try:
            return parse_zone(value, [z for z in served if z])
        except UnknownZone as exc:
            raise ValueError(f"not a zone of the static table or a source; {exc.hint}") from None

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[CarbonSourceConfig]) -> list[CarbonSourceConfig]:
        names = [s.name for s in sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"names must be unique, {', '.join(map(repr, twice))} is used more than once "
                "(a source's name defaults to its kind: give each one its own `name`)"
            )
        return sources


class CostConfig(_Section):
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    energy_price_per_kwh: float = Field(default=0.0, ge=0)
    gpu_hourly_price: dict[str, float] = Field(default_factory=dict)  # model key/name -> price


class HostConfig(_Section):
    """Host CPU and DRAM energy from RAPL (the `host` collector)."""

    powercap_root: Path = Path("/sys/class/powercap")  # the host's, mounted, in a container
    estimate: bool = False  # CodeCarbon 3.3.2's CPU and DRAM models where RAPL cannot be read
    cpu_tdp_watts: float | None = Field(default=None, gt=0)  # all sockets together

    @model_validator(mode="after")
    def _estimate_needs_tdp(self) -> HostConfig:
        if self.estimate and self.cpu_tdp_watts is None:
            raise ValueError("cpu_tdp_watts: the estimate (host.estimate) needs the CPU's TDP")
        return self


class LabelsConfig(_Section):
    hostname: bool = True
    hostname_value: str | None = None  # None: $NODE_NAME, else the machine's hostname


class CollectorsConfig(_Section):
    gpu: bool = True
    efficiency: bool = True
    gpm: bool = True
    pcie: bool = True
    processes: bool = True
    mig: bool = True
    inference: bool = True
    carbon: bool = True
    host: bool = True

    def enabled(self) -> list[str]:
        return [name for name, on in self.model_dump().items() if on]


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    carbon: CarbonConfig = Field(default_factory=CarbonConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    collectors: CollectorsConfig = Field(default_factory=CollectorsConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """WARNING as Python's logging spells it, as well as warning."""
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dcgm_fetch_fits_the_read_deadline(self) -> Config:
        """A fetch that outlives the device read's deadline would mark every GPU late
        instead of saying that dcgm-exporter is down."""
        timeout, deadline = self.backend.dcgm.timeout_seconds, self.collect.timeout
        if self.backend.kind == "dcgm" and timeout is not None and timeout >= deadline:
            derived = (
                ""
                if self.collect.device_timeout_seconds is not None
                else f", 0.8 x collect.interval_seconds {self.collect.interval_seconds:g} s"
            )
            raise ValueError(
                f"backend.dcgm.timeout_seconds: {timeout:g} s must be shorter than the read "
                f"deadline collect.device_timeout_seconds ({deadline:g} s{derived})"
            )
        return self

    @property
    def dcgm_timeout(self) -> float:
        """The page's deadline: as set, else derived so that any valid interval works."""
        timeout = self.backend.dcgm.timeout_seconds
        return timeout if timeout is not None else min(0.5, 0.75 * self.collect.timeout)


def parse_listen_address(value: str) -> tuple[str, int]:
    """':9479' -> ('0.0.0.0', 9479); '127.0.0.1:0'; '[::1]:9479'."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT or :PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535, got {value!r}")
    return host, port


def load_config(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Merge file < environment < flags and validate once. An error names the key path and
    where its value came from: the file and line, the variable, or the flag (`flags` maps
    the dotted keys of `overrides` to the flag that set them). Without `path` the file is
    $GREENOPS_CONFIG's, if set."""
    environ = os.environ if environ is None else environ
    data, origins = file_and_environment(path, environ)
    if overrides:
        for dotted, flag in (flags or {}).items():
            given: Any = overrides
            for part in dotted.split("."):
                given = given.get(part) if isinstance(given, Mapping) else None
            if given is not None:
                origins.set(tuple(dotted.split(".")), flag, given)
        data = deep_merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin=origins, model=Config)) from exc


def effective_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
