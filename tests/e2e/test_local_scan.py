"""Issue 8: `skydriver local-scan` runs a whole scan through the real services and leaves nothing behind.

Run as a user runs it — a subprocess, on the real broker and a MongoDB wire server — it starts the
WMS, a TMS with local pilots and skydriver (which starts a scanner), scans an event, writes a
skymap that IceCube's own `icecube-skyreader` reads and plots, and stops everything: no process of
the run (services, scanner, pilots: all carry the run's marker) and no port it listened on is left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import skyreader
from skyreader.plot.plot import SkyScanPlotter

from skydriver.cli.deployment import LAST_RUN, Deployment
from skydriver.cli.supervisor import leftovers
from skydriver.examples import example_event_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 20_000  # a blank figure with axes is smaller; a sky map with colours and contours is larger


def local_scan(home: Path, backends: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skydriver.cli", "local-scan", "--home", str(home), *backends, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,  # a hung run fails the test instead of the whole session
    )


@pytest.fixture
def backends(amqp_url: str, management_url: str, mongo_url: str) -> list[str]:
    return ["--no-dev-services", "--amqp-url", amqp_url, "--management-url", management_url, "--mongodb-url", mongo_url]


def listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def assert_nothing_left(home: Path) -> None:
    """The run's record moved to last-run.json, and nothing it names or marked still runs or listens."""
    assert Deployment.load(home) is None, "the services' record should be retired"
    record = json.loads((home / "run" / LAST_RUN).read_text())
    assert [s["name"] for s in record["services"]] == ["wms", "tms", "skydriver"]
    for service in record["services"]:  # each led a process group of its own: the whole group is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(service["pid"], 0)
    assert leftovers(record["run_id"]) == []  # nor any scanner or pilot: they carry the run's marker
    assert not listening(record["skydriver_url"]) and not listening(record["wms_url"])


def check_result(output: Path, stdout: str) -> None:
    for line in ("best fit", "contours", "result", "plots"):
        assert any(text.startswith(line) for text in stdout.splitlines()), stdout
    for png in ("skymap_full.png", "skymap_zoom.png"):
        data = (output / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > MIN_PNG_BYTES, png
    result = skyreader.SkyScanResult.read_json(output / "skymap.json")
    event = json.loads(example_event_path().read_text())
    metadata = result.get_event_metadata()
    assert (metadata.run_id, metadata.event_id) == (event["run_id"], event["event_id"])
    best = json.loads((output / "summary.json").read_text())["best_fit"]
    assert [math.degrees(float(angle)) for angle in result.best_dir] == pytest.approx([best["ra_deg"], best["dec_deg"]])
    SkyScanPlotter(output).create_plot(result)  # skyreader draws it too
    assert [p for p in output.glob("*.pdf") if p.stat().st_size > MIN_PNG_BYTES]


def test_a_dummy_scan_runs_end_to_end_and_leaves_nothing(tmp_path: Path, backends: list[str]) -> None:
    output = tmp_path / "out"
    done = local_scan(tmp_path / "home", backends, "--reco", "dummy", "--nsides", "8:0,64:4", "--output", str(output))
    assert done.returncode == 0, done.stderr[-4000:]
    check_result(output, done.stdout)
    assert_nothing_left(tmp_path / "home")


@pytest.mark.slow
def test_the_physics_reco_on_a_tiny_nside(tmp_path: Path, backends: list[str]) -> None:
    output = tmp_path / "out"
    done = local_scan(tmp_path / "home", backends, "--reco", "pandel_track", "--nsides", "8:0", "--output", str(output))
    assert done.returncode == 0, done.stderr[-4000:]
    check_result(output, done.stdout)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["angular_error_deg"] < 10  # one nside-8 pixel is ~7° across
    assert_nothing_left(tmp_path / "home")


def test_sigterm_mid_scan_stops_everything(tmp_path: Path, backends: list[str]) -> None:
    """As a Ctrl-C would: the scan is stopped, the services go, exit 143, nothing left."""
    command = [sys.executable, "-m", "skydriver.cli", "local-scan", "--home", str(tmp_path), *backends]
    proc = subprocess.Popen(
        [*command, "--reco", "dummy", "--nsides", "8:0,64:12"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # until the scan is submitted: the services and a scanner are running
        seen.append(line)
        if ": dummy on run" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 143, "".join(seen) + rest
    assert "SIGTERM: stopping the scan and the services" in rest
    assert_nothing_left(tmp_path)
