"""What `check` and `record` say about published dcgm-exporter pages: no unit without a
number, no field listed as read beside a value shown as missing without saying why, a
refused page described (what it held, why it is unusable), a cached page named as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcgmpages import FIXTURES, PageServer, real_page
from greenops_exporter.backends.dcgm_page import PageError, parse_page
from greenops_exporter.cli import main


def check_rows(page: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[dict]]:
    """`check --backend dcgm` on `page` served locally: exit code, output, each GPU's rows."""
    with PageServer(page) as server:
        code = main(["check", "--backend", "dcgm", "--dcgm-url", server.url])
    out = capsys.readouterr().out
    gpus: list[dict[str, str]] = []
    for line in out.splitlines():
        if line.startswith("GPU "):
            gpus.append({})
        elif line.startswith("  ") and gpus:
            gpus[-1][line[2:25].strip()] = line[25:]
    return code, out, gpus


def test_unknown_memory_is_said_once_never_as_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """The 8 x H100 page has no DCGM_FI_DEV_FB_*: no `memory 0.0 GiB`, no `not on this page
    of not on this page`, and no FB field in the fields read."""
    code, out, gpus = check_rows(real_page("06-h100x8-aicr-pods-sampled.txt"), capsys)
    assert code == 0 and len(gpus) == 8
    assert "0.0 GiB" not in out
    assert "of not on this page" not in out
    lines = out.splitlines()
    header = lines[next(i for i, line in enumerate(lines) if line.startswith("GPU 0:")) + 1]
    assert header == (
        "  architecture hopper, driver 580.105.08, memory not on this page, power limit not "
        "on this page, MIG off"
    )
    for rows in gpus:
        assert rows["memory used"] == "not on this page"
        assert "DEV_FB_USED" not in rows[next(k for k in rows if k.startswith("fields read"))]


def test_a_field_read_beside_a_missing_value_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    """dcgm-exporter #736's A30 in MIG mode: framebuffer fields for GPU instance 6 only, so
    the GPU's memory used is unknown although DEV_FB_USED is among the fields read."""
    code, out, gpus = check_rows((FIXTURES / "mixed_mig_736.txt").read_text(), capsys)
    assert code == 0
    a30 = gpus[0]  # GPU 0 of the page: A30, instances 3 and 6
    assert a30["MIG devices"] == "GI 3 1g.6gb, GI 6 1g.6gb"
    assert "DEV_FB_USED" in next(v for k, v in a30.items() if k.startswith("fields read"))
    assert a30["memory used"] == "not on this page (DEV_FB_USED only for GI 6 of GI 3, 6)"
    assert "driver ," not in out  # no driver label on this page: said, not left blank


def test_a_relabelled_page_is_refused_saying_what_it_held() -> None:
    """#272's page: dcgm_fi_* names and a `uuid` label, a relabelling pipeline's output."""
    with pytest.raises(PageError) as err:
        parse_page(real_page("13-a100-mig-lowercase-272.txt"))
    message = str(err.value)
    assert message.startswith("found 3 series of 1 metric (dcgm_fi_prof_gr_engine_active)")
    assert "lower case" in message and "relabelling" in message
    assert "point the URL at dcgm-exporter itself" in message


def test_an_empty_page_says_what_it_held_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    """It said only "no device found": the first empty page was taken for the cache."""
    code, out, _ = check_rows("", capsys)
    assert code == 1
    assert "no device found" not in out
    assert (
        "the page has no series (0 bytes): dcgm-exporter serves an empty page before its "
        "first collection and when DCGM sees no GPU" in out
    )
    with pytest.raises(PageError, match="none named DCGM_FI_"):
        parse_page("# HELP up x\n# TYPE up gauge\nup 1\n")
    with pytest.raises(PageError, match="none of the DCGM_FI_\\* fields the exporter reads"):
        parse_page('DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-1"} 0\n')


def test_record_on_a_page_that_never_changes_names_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kops L4 page served unchanged: one sample, and why (dcgm-exporter's -c)."""
    out_file = tmp_path / "l4.jsonl"
    with PageServer(real_page("01-l4-kops-gpu-operator.txt")) as server:
        code = main(
            [
                "record",
                "--backend",
                "dcgm",
                "--dcgm-url",
                server.url,
                "--collect-interval",
                "0.25",
                "--duration",
                "1.6",
                "--out",
                str(out_file),
            ]
        )
    out = capsys.readouterr().out
    assert code == 0
    [sample] = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sample["power_mw"] == pytest.approx(16365, abs=0.5)  # the page's 16.365000 W
    lines = out.splitlines()
    at = lines.index(f"{out_file}: 1 samples")
    hint = lines[at + 1]
    cycles = int(hint.split(" of ")[1].split(" ")[0])
    assert cycles >= 3  # 1.6 s at 0.25 s: the count depends on the machine, the repeats do not
    assert hint == (
        f"  {cycles - 1} of {cycles} cycles read the same sample again: dcgm-exporter serves "
        "its cached sample between collections (every 30 s by default): run it with -c 250 "
        "(DCGM_EXPORTER_INTERVAL=250, milliseconds) for a new sample every 0.25 s"
    )


def test_check_says_when_a_gpu_has_no_activity_data(capsys: pytest.CaptureFixture[str]) -> None:
    """#250's V100 page: GPUs 1-3 without an activity field, and no pci_bus_id label."""
    code, out, gpus = check_rows(real_page("10-v100x4-fragment-250.txt"), capsys)
    assert code == 0 and len(gpus) == 4
    assert gpus[0]["bottleneck"] == "idle (basic signals)"  # GPU_UTIL 0 on the page
    for rows in gpus[1:]:
        assert rows["bottleneck"] == "unknown (no activity data: no class asserted)"
        assert rows["class signals"].startswith("none: no activity field, so no class; add ")
        assert rows["recommendation"].startswith("no activity data on this page: add ")
    assert "None" not in out
    assert all(
        line.endswith("bus not on this page")
        for line in out.splitlines()
        if line.startswith("GPU ")
    )


def test_a_pod_of_unknown_memory_is_never_n_a_gib(capsys: pytest.CaptureFixture[str]) -> None:
    """#68's A30: a pod on GPU instance 1, no framebuffer field on the page."""
    code, out, [rows] = check_rows(real_page("15-a30-mig-2g-pod-68-before.txt"), capsys)
    assert code == 0
    assert rows["processes"].endswith(" container-testest-1 not on this page")
    assert "n/a GiB" not in out and "None" not in out
    assert rows["MIG devices"] == "GI 1 2g.12gb"
    assert rows["recommendation"].startswith("50% of this GPU (2 of 4 compute slices)")
