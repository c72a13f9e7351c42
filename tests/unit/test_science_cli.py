"""`skymap-scan`: a scan from the command line, its files, resuming, and the process pool with failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skyreader  # type: ignore[import-untyped]

from skydriver.scanner import cli

SMALL = "8:0,16:4,64:6"


def _skymap_rows(directory: Path) -> dict[str, list[list[float]]]:
    return {key: entry["data"] for key, entry in json.loads((directory / "skymap.json").read_text()).items()}


def test_scan_writes_skymap_summary_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--simulate", "3", "--reco", "dummy", "--nsides", SMALL, "-o", str(tmp_path), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    rows = _skymap_rows(tmp_path)
    assert summary["n_pixels"] == sum(len(r) for r in rows.values()) and summary["new_tasks"] == summary["n_pixels"]
    assert len(rows["nside-8"]) == 768 and len(rows["nside-16"]) >= 4 * 4 and len(rows["nside-64"]) >= 6 * 16
    assert summary["area_50_sqdeg"] < summary["area_90_sqdeg"] and "angular_error_deg" in summary
    result = skyreader.SkyScanResult.read_json(tmp_path / "skymap.json")
    assert result.nsides == [8, 16, 64]
    for name in ("skymap_full.png", "skymap_zoom.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_resume_redoes_only_missing_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--simulate", "4", "--reco", "dummy", "--nsides", SMALL, "--quiet", "--no-plots"]
    assert cli.main([*args, "-o", str(tmp_path / "full")]) == 0
    assert cli.main([*args, "-o", str(tmp_path / "cut")]) == 0
    capsys.readouterr()
    pixels = tmp_path / "cut" / "pixels.jsonl"
    lines = pixels.read_text().splitlines()
    kept = lines[:500]
    pixels.write_text("\n".join(kept) + "\n" + lines[500][:40])  # a crash mid-write leaves half a line
    assert cli.main(["--resume", str(tmp_path / "cut"), "--quiet", "--no-plots"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["new_tasks"] == len(lines) - len(kept)
    assert _skymap_rows(tmp_path / "cut") == _skymap_rows(tmp_path / "full")


def test_process_pool_retries_failing_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--simulate", "5", "--nsides", "8:0,16:2", "--quiet", "--no-plots", "--workers", "2"]
    assert cli.main([*args, "--reco", "dummy", "-o", str(tmp_path / "clean")]) == 0
    # 1 in 5 fits fails; 12 tries make a task failing every time a 1e-8 chance
    crashing = ["--reco", "crash_dummy", "--reco-option", "failure_rate=0.2", "--max-attempts", "12"]
    crashing += ["-o", str(tmp_path / "crash")]
    assert cli.main([*args, *crashing]) == 0
    capsys.readouterr()
    assert _skymap_rows(tmp_path / "crash") == _skymap_rows(tmp_path / "clean")
    assert json.loads((tmp_path / "crash" / "scan.json").read_text())["reco_options"] == {"failure_rate": 0.2}


def test_a_task_that_always_fails_stops_the_scan(tmp_path: Path) -> None:
    args = ["--simulate", "5", "--nsides", "8:0", "--quiet", "--no-plots", "--reco", "crash_dummy"]
    with pytest.raises(cli.TaskFailed, match="failed 3 times"):
        cli.main([*args, "--reco-option", "failure_rate=1", "-o", str(tmp_path)])
