"""From the config to the running parts: backend, collection settings, sources, carbon chain."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenops_exporter.analysis.footprint import FootprintSettings
from greenops_exporter.analysis.inference import InferenceAccount
from greenops_exporter.backends import choose_backend
from greenops_exporter.backends.base import Backend, BackendUnavailable, DeviceInfo
from greenops_exporter.backends.scenario import ScenarioError
from greenops_exporter.collect import CollectSettings, InferenceBinding
from greenops_exporter.collect.settings import HostSettings
from greenops_exporter.config.models import Config, ConfigError, secret
from greenops_exporter.facts.gpu_models import model_by_name
from greenops_exporter.sources.base import PolledSource
from greenops_exporter.sources.carbon_intensity import (
    CarbonApi,
    CarbonAwareSdk,
    CarbonChain,
    ElectricityMaps,
    UkCarbonIntensity,
    WattTime,
    parse_zone,
)
from greenops_exporter.sources.carbon_static import STATIC
from greenops_exporter.sources.cgroups import CgroupReader

if TYPE_CHECKING:
    from greenops_exporter.sources.kubelet import ProcessIdentifier


def hostname_label(config: Config) -> str | None:
    if not config.labels.hostname:
        return None
    return config.labels.hostname_value or os.environ.get("NODE_NAME") or socket.gethostname()


def effective_config(config: Config) -> Config:
    """The config with the values its defaults resolve to (`--print-config`): the device
    timeout, the embedded scenario and its seed, the hostname label's value."""
    from importlib import resources

    from greenops_exporter.backends.sim import load_scenario

    out = config.model_copy(deep=True)
    out.collect.device_timeout_seconds = round(config.collect.timeout, 6)  # 0.8 x 0.1
    sim = out.backend.sim
    if config.backend.kind in ("auto", "sim"):
        if sim.scenario is None:
            demo = resources.files("greenops_exporter").joinpath("scenarios/demo.yaml")
            sim.scenario = Path(str(demo))
        if sim.seed is None:
            try:
                sim.seed = load_scenario(sim.scenario).seed
            except ScenarioError as exc:
                raise ConfigError(f"backend.sim.scenario: {exc}") from exc
    out.labels.hostname_value = hostname_label(config)
    return out


def settings_from(config: Config) -> CollectSettings:
    c = config.collect
    return CollectSettings(
        interval_seconds=c.interval_seconds,
        device_timeout_seconds=c.timeout,
        energy_anchor_seconds=c.energy_anchor_seconds,
        process_utilization=c.process_utilization,
        backend_retry_seconds=c.backend_retry_seconds,
        gpm=config.collectors.gpm,
        processes=config.collectors.processes,
        mig=config.collectors.mig,
        thresholds=config.analysis.bottleneck.thresholds(),
        waste=config.analysis.waste(),
        identity_expire_seconds=config.analysis.identity_expire_seconds,
        advice_window_seconds=config.analysis.advice_window_seconds,
        footprint_for=footprint_resolver(config),
        greenest_window_seconds=config.carbon.greenest_window_seconds,
        greenest_within_seconds=config.carbon.greenest_within_seconds,
        host=host_settings(config),
    )


def host_settings(config: Config) -> HostSettings | None:
    """The host collector's settings; None when `collectors.host` is off."""
    if not config.collectors.host:
        return None
    h = config.host
    return HostSettings(
        powercap_root=h.powercap_root,
        estimate=h.estimate,
        cpu_tdp_watts=h.cpu_tdp_watts,
        identity_expire_seconds=config.analysis.identity_expire_seconds,
        pue=config.carbon.pue,
        energy_price_per_kwh=config.cost.energy_price_per_kwh,
        currency=config.cost.currency,
    )


def backend_from(config: Config) -> tuple[Backend, str]:
    """The configured backend. A scenario or a recording that cannot be used is a config
    error now, not a backend that retries forever: no retry can make a file readable."""
    b = config.backend
    try:
        backend, reason = choose_backend(
            b.kind,
            scenario=b.sim.scenario,
            seed=b.sim.seed,
            replay_files=b.replay.files,
            replay_speed=b.replay.speed,
            replay_loop=b.replay.loop,
            dcgm_url=b.dcgm.url,
            dcgm_timeout=config.dcgm_timeout,
            dcgm_kubernetes=b.dcgm.kubernetes,
        )
    except ScenarioError as exc:
        raise ConfigError(f"backend.sim.scenario: {exc}") from exc
    if b.kind == "replay":
        try:
            backend.open()  # reads every recording; the loop opens it again to play
        except BackendUnavailable as exc:
            raise ConfigError(f"backend.replay.files: {exc}") from exc
        backend.close()
    return backend, reason


STATIC_ZONES = {name.lower() for name in STATIC}


def _fallback_zone(config: Config, sources: list[CarbonApi]) -> str:
    """The table's zone while the live sources have no fresh value: `carbon.zone` where it
    is set, else the first source's own zone when the table has it. Left at its default
    (world), an outage of a GB source switched the answer from GB's 200 g to the world's
    475 g, a verdict of another zone."""
    own = sources[0].zone if sources else ""
    if "zone" in config.carbon.model_fields_set or own.lower() not in STATIC_ZONES:
        return config.carbon.zone
    return parse_zone(own)


def kubernetes_from(config: Config) -> tuple[ProcessIdentifier | None, list[PolledSource[Any]]]:
    """The pod-resources source (when wanted) and the process identifier built on it."""
    k = config.kubernetes
    if k.proc_root != Path("/proc"):  # the node's /proc in a container: process names too
        import psutil

        psutil.PROCFS_PATH = str(k.proc_root)
    kubelet = None
    if k.pod_resources == "on" or (k.pod_resources == "auto" and k.pod_resources_socket.exists()):
        from greenops_exporter.sources.kubelet import (
            KubeletPodResources,  # gRPC: 8 MiB, only when used
        )

        kubelet = KubeletPodResources(k.pod_resources_socket, k.poll_seconds, k.timeout_seconds)
    cgroups = CgroupReader(k.proc_root) if k.cgroups else None
    if kubelet is None and cgroups is None:
        return None, []
    from greenops_exporter.sources.kubelet import ProcessIdentifier

    return ProcessIdentifier(kubelet, cgroups), [kubelet] if kubelet else []


def carbon_from(config: Config, zone: str | None = None) -> CarbonChain:
    """The live carbon APIs in the configured order, then the static table.

    With a zone (a command's --zone) only the sources that serve that zone are asked, and
    the table's figure for it is the fallback: the answer is always that zone's. An unknown
    zone raises UnknownZone, naming the nearest ones.
    """
    c = config.carbon
    sources: list[CarbonApi] = []
    for i, s in enumerate(c.sources):
        where = f"carbon.sources.{i}"
        kw: dict[str, Any] = {
            "name": s.name,
            "interval_seconds": s.interval_seconds,
            "timeout_seconds": s.timeout_seconds,
        }
        if s.kind == "electricitymaps":
            token = secret(f"{where}.token", s.token, s.token_file, s.token_env)
            if token is None:
                raise ConfigError(
                    f"{where}.token: electricitymaps needs a token (or token_file, token_env)"
                )
            sources.append(ElectricityMaps(s.url, s.zone or "", token, **kw))
        elif s.kind == "watttime":
            password = secret(f"{where}.password", s.password, s.password_file, s.password_env)
            if password is None:
                raise ConfigError(
                    f"{where}.password: watttime needs a password (or password_file, password_env)"
                )
            sources.append(WattTime(s.url, s.zone or "", s.username or "", password, **kw))
        elif s.kind == "uk":
            sources.append(UkCarbonIntensity(s.url, s.region_id, **kw))
        else:
            sources.append(CarbonAwareSdk(s.url, s.zone or "", **kw))
    if zone is None:
        return CarbonChain(
            sources, _fallback_zone(config, sources), c.intensity_grams_per_kwh, c.max_age_seconds
        )
    zone = parse_zone(zone, [s.zone for s in sources])
    serving = [s for s in sources if s.zone.lower() == zone.lower()]
    return CarbonChain(serving, zone, c.intensity_grams_per_kwh, c.max_age_seconds)


def footprint_resolver(config: Config) -> Callable[[DeviceInfo], FootprintSettings]:
    """Per-GPU carbon and cost settings, looked up by model key, then NVML name, then default."""

    def resolve(info: DeviceInfo) -> FootprintSettings:
        model = model_by_name(info.name)
        keys = [k for k in (model.key if model else None, info.name, "default") if k]
        embodied = next(
            (config.carbon.embodied[k] for k in keys if k in config.carbon.embodied), None
        )
        price = next(
            (config.cost.gpu_hourly_price[k] for k in keys if k in config.cost.gpu_hourly_price),
            0.0,
        )
        return FootprintSettings(
            pue=config.carbon.pue,
            embodied_kg=embodied.kg if embodied else 0.0,
            lifetime_years=embodied.lifetime_years if embodied else 4.0,
            energy_price_per_kwh=config.cost.energy_price_per_kwh,
            rental_price_per_hour=price,
            currency=config.cost.currency,
        )

    return resolve


def inference_from(config: Config) -> list[InferenceBinding]:
    if not config.inference.sources:
        return []
    # only where a server is configured: its text parser is 2 MiB of a node's RSS
    from greenops_exporter.sources.inference import KINDS, CounterSpec, InferenceSource

    bindings = []
    for c in config.inference.sources:
        spec = KINDS.get(c.kind) or CounterSpec(
            requests=c.requests_metric or "",
            prompt_tokens=c.prompt_tokens_metric,
            generation_tokens=c.generation_tokens_metric,
            model_label=c.model_label,
            matchers=c.matchers,
        )
        source = InferenceSource(c.name, c.kind, c.url, spec, c.interval_seconds, c.timeout_seconds)
        gpus = None if c.gpus == "auto" else frozenset(str(g) for g in c.gpus)
        source.find_pids = gpus is None
        bindings.append(
            InferenceBinding(source, gpus, InferenceAccount(config.inference.window_seconds))
        )
    return bindings
