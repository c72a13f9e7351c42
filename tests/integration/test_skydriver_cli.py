"""The `skydriver` CLI and alert hook against running services (started once with `local-scan --keep-running`).

What a user sees is what is checked: exit codes, the one-line messages for connection refused,
401, 404 and 400 (never a traceback), the alert hook's one log line per alert, its dedup on
run/event and its priority, and a scan submitted, followed and fetched with the scan commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skydriver.cli.api import Connection, SkyDriverAPI
from skydriver.cli.deployment import Deployment
from skydriver.cli.errors import Exit
from skydriver.cli.supervisor import leftovers
from skydriver.event.simulate import random_track, simulate_track
from skydriver.examples import example_event_path

NOWHERE = ["--cluster", "nowhere=1"]  # a location no TMS serves: the scan waits, costing no pilots


def skydriver_cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skydriver.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, amqp_url: str, management_url: str, mongo_url: str, management_api: Any
) -> Iterator[Deployment]:
    """The services, up once for the module; `--stop` must then leave no process and no queue of theirs."""
    home = tmp_path_factory.mktemp("local")
    backends = ["--amqp-url", amqp_url, "--management-url", management_url, "--mongodb-url", mongo_url]
    up = skydriver_cli("local-scan", "--keep-running", "--no-scan", "--workers", "1", "--home", str(home),
                       "--no-dev-services", *backends)  # fmt: skip
    deployment = Deployment.load(home)
    assert up.returncode == 0 and deployment is not None, up.stderr[-4000:]
    assert "local-scan --stop" in up.stdout and deployment.token_file in up.stdout
    try:
        yield deployment
    finally:
        user = {"SKYDRIVER_URL": deployment.skydriver_url, "SKYDRIVER_TOKEN_FILE": deployment.token_file}
        workflows = {m["ewms_workflow_id"] for m in api(user, "find", {}, True)} - {"pending-ewms"}
        down = skydriver_cli("local-scan", "--stop", "--home", str(home))
    assert down.returncode == 0, down.stderr
    assert leftovers(deployment.run_id) == []
    _, queues = management_api("GET", "/api/queues")
    assert [q["name"] for q in queues if q["name"].split("-")[0] in workflows] == []


@pytest.fixture
def user(services: Deployment) -> dict[str, str]:
    """The environment a user of these services sets."""
    return {"SKYDRIVER_URL": services.skydriver_url, "SKYDRIVER_TOKEN_FILE": services.token_file}


def one_line_error(done: subprocess.CompletedProcess[str], code: Exit, *words: str) -> None:
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


# -- error messages -----------------------------------------------------------------------------------------


def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        done = skydriver_cli("scan", "status", "x", "--url", url, "--token", "t")
    one_line_error(done, Exit.UNREACHABLE, "cannot reach skydriver", url)


def test_a_bad_token_is_401(user: dict[str, str]) -> None:
    done = skydriver_cli("scan", "find", env={**user, "SKYDRIVER_TOKEN_FILE": "", "SKYDRIVER_TOKEN": "not-a-jwt"})
    one_line_error(done, Exit.REFUSED, "401", "token")


def test_an_unknown_scan_is_404(user: dict[str, str]) -> None:
    unknown = "0123456789abcdef" * 2
    done = skydriver_cli("scan", "status", unknown, env=user)
    one_line_error(done, Exit.REFUSED, "404", f"scan {unknown}")


def test_a_bad_request_is_400_naming_the_field(user: dict[str, str]) -> None:
    done = skydriver_cli("scan", "submit", str(example_event_path()), "--nsides", "7:0", env=user)
    one_line_error(done, Exit.REFUSED, "400", "nsides")


# -- the alert hook -----------------------------------------------------------------------------------------


def alert(seed: int, **meta: Any) -> str:
    event = simulate_track(random_track(seed), seed, run_id=900 + seed).to_dict()
    return json.dumps({"alert": meta, "event": event} if meta else event)


def hook_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split("alert-hook: ", 1)[1] for line in done.stderr.splitlines() if "alert-hook: " in line]


def find(user: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """`skydriver scan find --json ...`."""
    done = skydriver_cli("scan", "find", "--json", *args, env=user)
    assert done.returncode == 0, done.stderr
    manifests: list[dict[str, Any]] = json.loads(done.stdout)
    return manifests


def api(user: dict[str, str], method: str, *args: Any, **kwargs: Any) -> Any:
    """A call through the CLI's client in this process: for set-up and clean-up, where no CLI is under test."""

    connection = Connection(user["SKYDRIVER_URL"], Path(user["SKYDRIVER_TOKEN_FILE"]).read_text().strip())

    async def call() -> Any:
        async with SkyDriverAPI(connection) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(call())


def event_scans(user: dict[str, str], run_id: int, include_deleted: bool = False) -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = api(user, "find", {"event_metadata.run_id": run_id}, include_deleted)
    return manifests


def test_the_alert_hook_starts_one_high_priority_scan_per_event(user: dict[str, str], tmp_path: Path) -> None:
    first, again, other = alert(11, alert_type="gold", alert_id="A1"), alert(11, alert_type="gold"), alert(12)
    stream = f"{first}\n{again}{other}\nthis is no alert\n"  # lines, concatenation and junk
    done = skydriver_cli("alert-hook", "--reco", "dummy", "--nsides", "8:0", *NOWHERE, env=user, stdin=stream)
    lines = hook_lines(done)
    assert done.returncode == Exit.USAGE, done.stderr  # the junk line is an invalid alert
    assert lines[0].startswith("stdin#1: run 911 event 11: started scan ")
    scan_id = lines[0].split()[-3]
    assert lines[1].startswith(f"stdin#2: run 911 event 11: duplicate of scan {scan_id} ")
    assert lines[2].startswith("stdin#3: run 912 event 12: started scan ")
    assert lines[3].startswith("stdin#4: invalid alert: not JSON")
    assert lines[4] == "done: 2 started, 1 duplicate, 1 invalid"

    [gold] = find(user, "--tag", "alert_type=gold")
    assert gold["scan_id"] == scan_id and gold["priority"] == 10
    assert gold["classifiers"] == {"alert_type": "gold", "alert_id": "A1", "source": "alert-hook", "run_id": 911,
                                   "event_id": 11}  # fmt: skip

    # a file, a lower priority, and duplicates allowed on purpose
    path = tmp_path / "alert.json"
    path.write_text(alert(11, alert_type="gold"))
    args = ["--reco", "dummy", "--nsides", "8:0", "--priority", "3", "--allow-duplicates", *NOWHERE]
    done = skydriver_cli("alert-hook", str(path), *args, env=user)
    assert done.returncode == 0, done.stderr
    assert hook_lines(done)[0].startswith(f"{path}: run 911 event 11: started scan ")
    priorities = sorted(m["priority"] for m in find(user, "--run-id", "911", "--event-id", "11"))
    assert priorities == [3, 10]

    # a stopped scan is not a duplicate any more
    for manifest in event_scans(user, 911) + event_scans(user, 912):
        api(user, "stop", manifest["scan_id"])
    assert event_scans(user, 911) == []
    assert len(event_scans(user, 911, include_deleted=True)) == 2
    done = skydriver_cli("alert-hook", str(path), "--reco", "dummy", "--nsides", "8:0", *NOWHERE, env=user)
    assert "started scan" in hook_lines(done)[0], done.stderr
    for manifest in event_scans(user, 911):
        api(user, "stop", manifest["scan_id"])


# -- a scan through the scan commands -----------------------------------------------------------------------


def test_submit_wait_result_rescan(user: dict[str, str], tmp_path: Path) -> None:
    event = str(example_event_path())
    done = skydriver_cli("scan", "submit", event, "--reco", "dummy", "--nsides", "8:0", "--tag", "test=cli", env=user)
    assert done.returncode == 0, done.stderr
    scan_id = done.stdout.strip()

    waited = skydriver_cli("scan", "wait", scan_id, env=user)
    assert waited.returncode == 0, waited.stderr
    assert "SCAN_FINISHED_SUCCESSFULLY" in waited.stderr.splitlines()[-1]

    plot, skymap = tmp_path / "sky.png", tmp_path / "sky.json"
    result = skydriver_cli("scan", "result", scan_id, "--plot", str(plot), "--json", str(skymap), env=user)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("best fit    RA ")
    assert plot.stat().st_size > 0 and (tmp_path / "sky_zoom.png").stat().st_size > 0
    assert "nside-8" in json.loads(skymap.read_text())

    status = skydriver_cli("scan", "status", scan_id, env=user)
    assert status.returncode == 0 and "8: 768/768" in status.stdout

    rescan = skydriver_cli("scan", "rescan", scan_id, "--replace", env=user)
    assert rescan.returncode == 0, rescan.stderr
    new_id = rescan.stdout.strip()
    stopped = skydriver_cli("scan", "stop", new_id, env=user)
    assert stopped.returncode == 0, stopped.stderr
    assert api(user, "scan_get", new_id, "/manifest", include_deleted=True)["rescan_of"] == scan_id

    refused = skydriver_cli("scan", "stop", scan_id, env=user)  # finished: needs --delete-completed
    one_line_error(refused, Exit.REFUSED, "400")
    assert skydriver_cli("scan", "stop", scan_id, "--delete-completed", env=user).returncode == 0
    assert [m["scan_id"] for m in find(user, "--tag", "test=cli")] == []
