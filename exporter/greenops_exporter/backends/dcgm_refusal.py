"""Why a dcgm-exporter page gave no usable GPU: what it held, and what to change."""

from __future__ import annotations


def refusal(text: str, read_fields: frozenset[str] = frozenset()) -> str:
    """What a page without a usable GPU held, and why none of it is usable (only on that
    path: the whole text is scanned again)."""
    series = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not series:
        size = len(text.encode())
        return (
            f"the page has no series ({size} bytes): dcgm-exporter serves an empty page before "
            "its first collection and when DCGM sees no GPU (see its log)"
        )
    names = sorted({line.split("{", 1)[0].split(" ", 1)[0] for line in series})
    ours = [n for n in names if n.startswith("DCGM_FI_")]
    renamed = [n for n in names if n.lower().startswith("dcgm_fi_") and n not in ours]
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    metrics = f"{len(names)} metric{'' if len(names) == 1 else 's'}"
    found = f"found {len(series)} series of {metrics} ({shown})"
    if renamed and not ours:
        return (
            f"{found}, named dcgm_fi_* in lower case: renamed on the way (a relabelling "
            "pipeline or a proxy; dcgm-exporter writes DCGM_FI_* with a UUID label), so the "
            "units and labels cannot be trusted: point the URL at dcgm-exporter itself"
        )
    if not ours:
        return f"{found}, none named DCGM_FI_*: not a dcgm-exporter page"
    if not {n for n in ours if n in read_fields}:
        return (
            f"{found}: none of the DCGM_FI_* fields the exporter reads (power, energy, "
            "utilisation, memory, clocks, profiling): add them to dcgm-exporter's field list"
        )
    return f"{found}: no DCGM_FI_* series with a UUID label, so no GPU can be told apart"
