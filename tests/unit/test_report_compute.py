"""The report's pure parts without a server: grouping and its gaps, the reconciliation
check failing when the parts do not add up, the period's alignment, the contracts."""

from __future__ import annotations

import dataclasses
import json

import pytest

from documentation import documentation
from greenops_exporter.commands.report import model
from greenops_exporter.commands.report.compute import compute, grouping
from greenops_exporter.commands.report.fetch import Raw
from greenops_exporter.commands.report.period import make_period
from greenops_exporter.commands.report.render import render
from greenops_exporter.commands.report.render_data import CSV_COLUMNS
from greenops_exporter.config.errors import UsageError

README = documentation()
DAY = 86400


def raw(pods: dict[tuple[str, ...], float], unheld: float, fleet: float) -> Raw:
    """Two daily buckets; each figure's value split evenly over them."""

    def two(x: float) -> list[float | None]:
        return [x / 2, x / 2]

    r = Raw()
    r.series = {
        "fleet_cost": {("energy", "USD"): two(fleet * 0.1), ("rental", "USD"): two(fleet * 0.9)},
        "holder_cost": {("pod",): two(sum(pods.values())), ("none",): two(unheld)},
        "group_cost": {(*k, "USD"): two(v) for k, v in pods.items()},
        "group_seconds": {k: two(3600.0) for k in pods},
    }
    return r


def test_absent_labels_and_unmapped_namespaces_are_marked_rows_not_spread() -> None:
    p = make_period("2026-09-01", "2026-09-03", None, "1h", 0)
    r = raw({("a",): 10.0, ("",): 4.0}, unheld=6.0, fleet=20.0)
    report = compute(r, p, grouping("namespace", None, {}))
    rows = {g.name: g for g in report.groups}
    assert rows["(no namespace)"].gap == "series without a namespace"
    assert rows["(no namespace)"].cost == 4.0 and rows["a"].gap is None
    assert report.check.ok and report.check.parts_cost == 20.0
    teams = compute(r, p, grouping("team", {"a": "ml"}, {}))
    assert {g.name: g.cost for g in teams.groups} == {"ml": 10.0, "(no team)": 4.0}
    assert "(no team): namespaces without a team, shown as its own row" in teams.notes


def test_the_check_fails_loudly_when_the_parts_do_not_add_up() -> None:
    p = make_period("2026-09-01", "2026-09-03", None, "1h", 0)
    # pods' series lost in a join or a --match: 3.00 of the fleet's cost is nobody's
    report = compute(
        raw({("a",): 10.0}, unheld=7.0, fleet=20.0), p, grouping("namespace", None, {})
    )
    assert not report.check.ok
    assert report.check.difference == pytest.approx(3.0)
    text = render(report, "text")
    assert "fleet GPU cost 20.0000 USD: DOES NOT reconcile: 3.0000 not attributed" in text
    assert json.loads(render(report, "json"))["check"]["ok"] is False


def test_a_cent_of_float_noise_still_reconciles_but_a_cent_does_not() -> None:
    p = make_period("2026-09-01", "2026-09-03", None, "1h", 0)
    g = grouping("namespace", None, {})
    assert compute(raw({("a",): 10.0}, 10.004, 20.0), p, g).check.ok
    assert not compute(raw({("a",): 10.0}, 10.006, 20.0), p, g).check.ok


def test_the_period_is_aligned_to_the_step_and_cut_into_days() -> None:
    now = 1_790_000_123.0
    p = make_period(None, None, "30d", "1h", now)
    assert p.end == 1_790_000_123 // 3600 * 3600 and p.end - p.start == 30 * DAY
    assert p.bucket == DAY and p.buckets == 30
    q = make_period("2026-09-01T00:00:00Z", "2026-09-01T05:00:00Z", None, "1h", now)
    assert q.bucket == 3600 and q.buckets == 5  # not whole days: step buckets
    for args, message in [
        ((None, None, None, "1h"), "give --last DURATION"),
        (("2026-09-01", None, "30d", "1h"), "--last and --from/--to"),
        (("2026-09-01", "2026-09-01T00:30:00Z", None, "1h"), "shorter than one step"),
        (("2026-09-01", "2026-09-02", None, "1.5s"), "whole seconds"),
    ]:
        with pytest.raises(UsageError, match=message):
            make_period(*args, now)  # type: ignore[arg-type]


def test_csv_columns_are_the_documented_ones_in_order() -> None:
    documented = README.split("the columns, in this order, never change: ")[1].split(".\n")[0]
    assert [c.strip(" `\n") for c in documented.replace("\n", " ").split(",")] == list(CSV_COLUMNS)


def test_every_json_field_is_documented() -> None:
    contract = README.split("**JSON** (`--format json`")[1].split("**CSV**")[0]
    classes = [model.Report, model.Group, model.Fleet, model.Check, model.Inference]
    classes += [model.Recommendation, model.Day]
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in dataclasses.fields(cls)
        if f"`{f.name}`" not in contract and f"`{f.name}[]`" not in contract
    ]
    assert missing == []
