"""From the answers to the report: groups, fleet, the reconciliation check, the trend and
the recommendations. Pure: numbers in, numbers out, no server needed to test it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from greenops_exporter.commands.report.fetch import Key, Raw, Values
from greenops_exporter.commands.report.model import (
    SCHEMA_VERSION,
    Check,
    Day,
    Fleet,
    Group,
    Inference,
    Recommendation,
    Report,
)
from greenops_exporter.commands.report.period import Period, iso
from greenops_exporter.commands.report.promql import GPU_ID

KWH, HOUR, GIB = 3.6e6, 3600.0, float(2**30)
CENT = 0.005  # the check holds when the parts and the fleet agree to the cent
TREND_GROUPS = 5  # the largest groups by cost in the trend; the rest as "other"
TOP_PODS = 10  # idle-while-held pods named one by one; the rest in one line


@dataclass(frozen=True)
class Grouping:
    """How server keys become groups: `--by` and, for teams and GPU models, a mapping."""

    by: str
    labels: tuple[str, ...]  # the key the server groups by
    name: Callable[[Key], tuple[str, str | None]]  # -> (group, gap reason or None)


FIXED = {"namespace": ("namespace",), "pod": ("namespace", "pod"), "gpu_model": GPU_ID}


def group_labels(by: str, namespace_map: Mapping[str, str] | None) -> tuple[str, ...]:
    """What the server groups by for `--by`: a team is a namespace mapped afterwards, a GPU
    model a GPU joined to greenops_gpu_info, anything else the series' own label."""
    if by in FIXED:
        return FIXED[by]
    return ("namespace",) if namespace_map is not None else (by,)


def grouping(
    by: str, namespace_map: Mapping[str, str] | None, models: Mapping[Key, str]
) -> Grouping:
    labels = group_labels(by, namespace_map)
    if by == "pod":
        return Grouping(by, labels, lambda k: (f"{k[0]}/{k[1]}", None) if k[1] else _gap("pod"))
    if by == "gpu_model":
        return Grouping(by, labels, lambda k: _or_gap(models.get(k, ""), "model"))
    if by not in FIXED and namespace_map is not None:
        mapping = dict(namespace_map)

        def team(k: Key) -> tuple[str, str | None]:
            if k[0] in mapping:
                return mapping[k[0]], None
            return f"(no {by})", f"namespaces without a {by}"

        return Grouping(by, labels, team)
    return Grouping(by, labels, lambda k: _or_gap(k[0], labels[0]))


def _gap(label: str) -> tuple[str, str | None]:
    return f"(no {label})", f"series without a {label}"


def _or_gap(value: str, label: str) -> tuple[str, str | None]:
    return (value, None) if value else _gap(label)


def _total(values: Values) -> float:
    return sum(v for v in values if v is not None)


def _by_index(series: Mapping[Key, Values], index: int) -> dict[str, float]:
    """Totals keyed by one position of the key (the kind, class, scope or holder)."""
    out: dict[str, float] = defaultdict(float)
    for key, values in series.items():
        out[key[index]] += _total(values)
    return out


def compute(
    raw: Raw,
    p: Period,
    g: Grouping,
    idle_hours_per_day: float = 4.0,
    queries: int = 0,
    warnings: tuple[str, ...] = (),
) -> Report:
    notes: list[str] = [f"partial answer from the server: {w}" for w in warnings]
    width = len(g.labels)
    currencies = {k[-1] for k in raw.get("fleet_cost")} | {k[-1] for k in raw.get("group_cost")}
    currency = ",".join(sorted(c for c in currencies if c)) or "?"
    if len(currencies) > 1:
        notes.append(f"several currencies ({currency}): narrow the report with --match")
    fleet = _fleet(raw, p)
    groups, gaps = _groups(raw, g, width, fleet.cost, raw.get("forecast_seconds") != {})
    notes += gaps
    parts = sum(x.cost for x in groups) + fleet.outside_pods_cost + fleet.unheld_cost
    groups_cost = sum(x.cost for x in groups)
    check = Check(
        groups_cost,
        fleet.outside_pods_cost,
        fleet.unheld_cost,
        parts,
        fleet.cost,
        fleet.cost - parts,
        abs(fleet.cost - parts) < CENT,
    )
    resets = _total(next(iter(raw.get("resets").values()), []))
    if resets:
        notes.append(
            f"{resets:.0f} cost counter series restarted from 0 in the period (an exporter "
            "restarted): counted from 0 after it; what accrued between its last scrape and "
            "the restart was never scraped"
        )
    if raw.bad_values:
        notes.append(f"{raw.bad_values} answers were NaN or infinite and were left out")
    return Report(
        SCHEMA_VERSION,
        iso(p.start),
        iso(p.end),
        p.step,
        p.bucket,
        g.by,
        currency,
        groups,
        fleet,
        check,
        _inference(raw),
        _recommend(raw, p, idle_hours_per_day, notes),
        _trend(raw, p, g, width, groups),
        notes,
        queries,
    )


def _fleet(raw: Raw, p: Period) -> Fleet:
    cost = _by_index(raw.get("fleet_cost"), 0)
    waste = _by_index(raw.get("fleet_waste"), 0)
    holder = _by_index(raw.get("holder_cost"), 0)
    seconds = _by_index(raw.get("holder_seconds"), 0)
    carbon = _by_index(raw.get("fleet_carbon"), 0)
    idle = _by_index(raw.get("idle_energy"), 0)
    energy = sum(_total(v) for v in raw.get("fleet_energy").values())
    return Fleet(
        cost["energy"] + cost["rental"],
        cost["energy"],
        cost["rental"],
        holder["pod"],
        holder["process"],
        holder["none"],
        waste["idle"],
        waste["overhead"],
        energy / KWH,
        idle["none"] / KWH,
        sum(seconds.values()) / HOUR,
        seconds["pod"] / HOUR,
        seconds["process"] / HOUR,
        seconds["none"] / HOUR,
        carbon["operational"],
        carbon["embodied"],
        len(raw.gpu_models),
    )


def _grouped(raw: Raw, figure: str, g: Grouping, width: int) -> dict[tuple[str, ...], float]:
    """(group, *rest of the key) -> total, and the gap reasons met."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for key, values in raw.get(figure).items():
        name, _gap = g.name(key[:width])
        out[(name, *key[width:])] += _total(values)
    return out


def _groups(
    raw: Raw, g: Grouping, width: int, fleet_cost: float, forecasts: bool
) -> tuple[list[Group], list[str]]:
    gaps: dict[str, str] = {}
    for figure in ("group_cost", "group_seconds", "group_energy"):
        for key in raw.get(figure):
            name, gap = g.name(key[:width])
            if gap is not None:
                gaps[name] = gap
    cost = _grouped(raw, "group_cost", g, width)
    energy_cost = _grouped(raw, "group_energy_cost", g, width)
    waste = _grouped(raw, "group_waste", g, width)
    energy = _grouped(raw, "group_energy", g, width)
    seconds = _grouped(raw, "group_seconds", g, width)
    idle = _grouped(raw, "group_idle_seconds", g, width)
    carbon = _grouped(raw, "group_carbon", g, width)
    stranded = _grouped(raw, "group_stranded", g, width)
    greenest = _grouped(raw, "group_greenest", g, width)
    money: dict[str, float] = defaultdict(float)
    for (name, *_currency), value in cost.items():
        money[name] += value
    names = sorted({*money, *(k[0] for k in (*seconds, *energy))}, key=lambda n: -money.get(n, 0.0))
    rows = []
    for name in names:
        total, e_cost = money.get(name, 0.0), energy_cost.get((name,), 0.0)
        rows.append(
            Group(
                name,
                gaps.get(name),
                total,
                e_cost,
                total - e_cost,
                waste.get((name, "idle"), 0.0),
                waste.get((name, "overhead"), 0.0),
                energy.get((name,), 0.0) / KWH,
                seconds.get((name,), 0.0) / HOUR,
                idle.get((name,), 0.0) / HOUR,
                stranded.get((name,), 0.0) / GIB / HOUR,
                carbon.get((name, "operational"), 0.0),
                carbon.get((name, "embodied"), 0.0),
                greenest.get((name,), 0.0) if forecasts else None,
                total / fleet_cost if fleet_cost > 0 else 0.0,
            )
        )
    notes = [f"{name}: {why}, shown as its own row" for name, why in sorted(gaps.items())]
    return rows, notes


def _inference(raw: Raw) -> list[Inference]:
    out = []
    energy, requests, tokens = (raw.get(f"inference_{k}") for k in ("energy", "requests", "tokens"))
    for key in sorted(energy):
        joules = _total(energy[key])
        r, t = _total(requests.get(key, [])), _total(tokens.get(key, []))
        out.append(
            Inference(
                key[0],
                key[1],
                r,
                t,
                joules / KWH,
                joules / r if r else None,
                joules / t if t else None,
            )
        )
    return out


def _span(p: Period, values: Values) -> tuple[str, str, int]:
    """The evidence window: from the first to the last bucket with a value, and how many."""
    present = [i for i, v in enumerate(values) if v]
    if not present:
        return iso(p.start), iso(p.end), 0
    return iso(p.bucket_end(present[0]) - p.bucket), iso(p.bucket_end(present[-1])), len(present)


def _recommend(raw: Raw, p: Period, idle_hours: float, notes: list[str]) -> list[Recommendation]:
    out: list[Recommendation] = []
    mig_cost, mig_grams, mig_seconds = (raw.get(f"mig_{k}") for k in ("cost", "grams", "seconds"))
    for key in sorted(mig_seconds, key=lambda k: -_total(mig_cost.get(k, []))):
        hours = _total(mig_seconds[key]) / HOUR
        start, end, _n = _span(p, mig_seconds[key])
        profile = raw.mig_profiles.get(key, "a smaller MIG profile")
        subject = f"{key[0] or '-'} GPU {key[1]} ({key[2]})"
        out.append(
            Recommendation(
                "mig_rightsize",
                subject,
                f"its work fit {profile} for {hours:.0f} h: consolidate onto a MIG slice",
                start,
                end,
                hours,
                _total(mig_cost.get(key, [])),
                _total(mig_grams.get(key, [])),
            )
        )
    if p.bucket == 86400:
        out += _idle_pods(raw, p, idle_hours)
    else:
        notes.append("idle-while-held days need a period of whole days: not computed")
    forecast = _total(next(iter(raw.get("forecast_seconds").values()), []))
    greenest = sum(_total(v) for v in raw.get("group_greenest").values())
    if forecast:
        start, end, _n = _span(p, next(iter(raw.get("forecast_seconds").values())))
        out.append(
            Recommendation(
                "greenest_window",
                "all pods' work",
                "starting work at the forecast's greenest window instead of when it ran "
                "(an upper bound: only deferrable work can move)",
                start,
                end,
                forecast / HOUR,
                None,
                greenest,
            )
        )
    else:
        notes.append("no carbon forecast recorded in the period: no greenest-window saving")
    return out


def _idle_pods(raw: Raw, p: Period, idle_hours: float) -> list[Recommendation]:
    per_pod: dict[tuple[str, str], list[float]] = {}
    gpus: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (namespace, pod, host, gpu, _uuid), values in raw.get("pod_idle_seconds").items():
        days = per_pod.setdefault((namespace, pod), [0.0] * p.buckets)
        for i, v in enumerate(values):
            days[i] += v or 0.0
        if _total(values):
            gpus[(namespace, pod)].add(f"{host or '-'}/{gpu}")
    cost = {k: _total(v) for k, v in raw.get("pod_idle_cost").items()}
    out = []
    for key, days in per_pod.items():
        over: Values = [d if d > idle_hours * HOUR else None for d in days]
        start, end, n = _span(p, over)
        if not n:
            continue
        out.append(
            Recommendation(
                "idle_while_held",
                f"{key[0]}/{key[1]} on {', '.join(sorted(gpus[key]))}",
                f"held its GPU idle more than {idle_hours:g} h a day on {n} days: stop it when "
                "idle (a notebook culler, a shorter TTL)",
                start,
                end,
                sum(days) / HOUR,
                cost.get(key, 0.0),
                None,
            )
        )
    out.sort(key=lambda r: -(r.saving_cost or 0.0))
    if len(out) <= TOP_PODS:
        return out
    rest = out[TOP_PODS:]
    first = min(r.evidence_from for r in rest)
    last = max(r.evidence_to for r in rest)
    summary = Recommendation(
        "idle_while_held",
        f"{len(rest)} more pods",
        f"each held a GPU idle more than {idle_hours:g} h on some day (named with a narrower "
        "--match)",
        first,
        last,
        sum(r.evidence_hours for r in rest),
        sum(r.saving_cost or 0.0 for r in rest),
        None,
    )
    return [*out[:TOP_PODS], summary]


def _trend(raw: Raw, p: Period, g: Grouping, width: int, groups: list[Group]) -> list[Day]:
    top = {x.name for x in groups[:TREND_GROUPS]}
    per: list[dict[str, float]] = [defaultdict(float) for _ in range(p.buckets)]
    for key, values in raw.get("group_cost").items():
        name, _gap = g.name(key[:width])
        for i, v in enumerate(values):
            per[i][name if name in top else "other"] += v or 0.0

    def column(figure: str, index: int | None, want: str = "") -> list[float]:
        out = [0.0] * p.buckets
        for key, values in raw.get(figure).items():
            if index is None or key[index] == want:
                for i, v in enumerate(values):
                    out[i] += v or 0.0
        return out

    cost = column("fleet_cost", None)
    unheld = column("holder_cost", 0, "none")
    operational = column("fleet_carbon", 0, "operational")
    embodied = column("fleet_carbon", 0, "embodied")
    return [
        Day(iso(p.bucket_end(i)), cost[i], unheld[i], dict(per[i]), operational[i], embodied[i])
        for i in range(p.buckets)
    ]
