"""PromQL for the report: each counter's exact increase per bucket, by telescoping.

`increase()` extrapolates each series to the window's edges, and by a different factor
for a series that starts or ends inside the window, so a month's pod costs would not add
up to the GPUs' own. Instead each step S contributes the difference of the last samples of
two consecutive steps; over a bucket these differences telescope to the counter's exact
change, for every series alike, so sums of series reconcile to the cent:

    (A - B >= 0 unless resets > 0)  # the step's increase (A: the step's last sample,
    or A + clamp_min(P - B, 0)      #   B: the previous one); a reset inside the step:
    or A * 1                        #   what it reached before (P: the step's peak) and
                                    #   after; a new series (a pod that started): from 0

A counter that went down restarted (the exporter did) once within the step, even where it
came back above the previous step's value (a counter that was 0 then: its pre-restart part
would be lost to A - B); exact while what it counts again after the restart stays below
its pre-restart peak, within one step's increase otherwise. A scrape gap of up to 2 steps
is bridged. Only standard PromQL:
subqueries, offset, last_over_time and `or`, which Thanos, Mimir and VictoriaMetrics serve.
"""

from __future__ import annotations


def window(seconds: int) -> str:
    """A range of (t - seconds, t]: a second short, so that Prometheus 2's closed ranges do
    not take a sample exactly on the previous boundary too (it would count a gauge's last
    sample twice, a bucket's last step twice); Prometheus 3's are left-open already."""
    return f"{max(seconds - 1, 1)}s"


def selector(metric: str, match: str, extra: str = "") -> str:
    inner = ",".join(part for part in (match, extra) if part)
    return f"{metric}{{{inner}}}" if inner else metric


def step_increase(metric: str, match: str, step: int, extra: str = "") -> str:
    m = selector(metric, match, extra)
    a = f"last_over_time({m}[{window(step)}])"
    b = f"last_over_time({m}[{window(2 * step)}] offset {step}s)"
    peak = f"max_over_time({m}[{window(step)}])"
    reset = f"resets({m}[{window(step)}]) > 0"
    return f"(({a} - {b} >= 0 unless {reset}) or {a} + clamp_min({peak} - {b}, 0) or {a} * 1)"


def by(labels: tuple[str, ...]) -> str:
    return f"by ({', '.join(labels)}) " if labels else ""


def bucket_increase(
    metric: str, match: str, labels: tuple[str, ...], step: int, bucket: int, extra: str = ""
) -> str:
    """The counter's increase over the bucket ending at each evaluation, summed by labels."""
    inner = f"sum {by(labels)}({step_increase(metric, match, step, extra)})"
    return f"sum {by(labels)}(sum_over_time({inner}[{window(bucket)}:{step}s]))"


def bucket_integral(
    metric: str, match: str, labels: tuple[str, ...], step: int, bucket: int
) -> str:
    """A gauge's integral over the bucket (value x seconds), sampled once a step."""
    inner = f"sum {by(labels)}(last_over_time({selector(metric, match)}[{window(step)}]))"
    return f"sum {by(labels)}(sum_over_time({inner}[{window(bucket)}:{step}s])) * {step}"


GPU_ID = ("hostname", "gpu", "uuid")


def pod_energy_cost(match: str, labels: tuple[str, ...], step: int, bucket: int) -> str:
    """Pods' energy cost: each step's pod joules at its GPU's own cost per joule that step
    (the exporter splits a GPU's cost by joules, so this is the energy part of pod cost)."""
    ids = ", ".join(GPU_ID)
    pod = f"sum by ({', '.join(sorted({*labels, *GPU_ID}))}) " + (
        f"({step_increase('greenops_pod_energy_joules_total', match, step)})"
    )
    energy = 'kind="energy"'
    cost = f"sum by ({ids}) ({step_increase('greenops_gpu_cost_total', match, step, energy)})"
    joules = f"sum by ({ids}) ({step_increase('greenops_gpu_energy_joules_total', match, step)})"
    per_joule = f"({cost} / ({joules} > 0))"
    inner = f"sum {by(labels)}({pod} * on({ids}) group_left() {per_joule})"
    return f"sum {by(labels)}(sum_over_time({inner}[{window(bucket)}:{step}s]))"


def weighted_increase(
    metric: str,
    match: str,
    labels: tuple[str, ...],
    step: int,
    bucket: int,
    weight: str,
    on: tuple[str, ...],
    extra: str = "",
) -> str:
    """A counter's per-step increase times a gauge in force that step (joined on `on`;
    steps without the gauge drop out): the share of cost a right-sizing would free, the
    carbon a move to the greenest window would save."""
    keep = tuple(sorted({*labels, *on}))
    inc = f"sum {by(keep)}({step_increase(metric, match, step, extra)})"
    w = f"max {by(on)}(last_over_time({weight}[{window(step)}]))"
    inner = f"sum {by(labels)}({inc} * on({', '.join(on)}) group_left() {w})"
    return f"sum {by(labels)}(sum_over_time({inner}[{window(bucket)}:{step}s]))"


def present_seconds(expr: str, labels: tuple[str, ...], step: int, bucket: int) -> str:
    """Seconds of the bucket in which a gauge was present (the evidence window)."""
    inner = f"count {by(labels)}(last_over_time({expr}[{window(step)}]))"
    return f"sum {by(labels)}(count_over_time({inner}[{window(bucket)}:{step}s])) * {step}"
