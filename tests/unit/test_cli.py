"""The `skydriver` CLI's offline parts: alert parsing and splitting, scan requests, results, progress, processes."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
from pathlib import Path

import pytest

from ewms_rest.client import ServiceRefused
from skydriver.cli import api, parser
from skydriver.cli.alerts import InvalidAlert, JSONTexts, parse_alert
from skydriver.cli.deployment import Deployment, ServiceRecord
from skydriver.cli.errors import CliError, Exit
from skydriver.cli.progress import ProgressLine, Snapshot, pilots_running
from skydriver.cli.scan_request import load_event, scan_request
from skydriver.cli.supervisor import Supervisor, carries_marker, leftovers
from skydriver.event.model import Event
from skydriver.event.simulate import random_track, simulate_track
from skydriver.examples import example_event_path
from skydriver.recos import PixelResult, run_pixel_task
from skydriver.scanner.result import MultiResolutionMap, fits_from_skymap, skymap

EVENT = json.loads(example_event_path().read_text())


def submit_args(*extra: str) -> argparse.Namespace:
    return parser().parse_args(["scan", "submit", "event.json", *extra])


# -- alerts -------------------------------------------------------------------------------------------------


def test_json_texts_splits_lines_concatenation_and_pieces() -> None:
    splitter = JSONTexts()
    stream = '{"a": 1}\n{"b": "}{"}{"c": [1, {"d": "\\""}]}\n  [2]'
    texts = [text for char in stream for text in splitter.feed(char)] + splitter.close()
    assert [json.loads(t) for t in texts] == [{"a": 1}, {"b": "}{"}, {"c": [1, {"d": '"'}]}, [2]]


def test_json_texts_hands_out_a_stray_line_and_an_unfinished_text() -> None:
    splitter = JSONTexts()
    assert splitter.feed('garbage here\n{"a": 1}\n{"b": ') == ["garbage here", '{"a": 1}']
    assert splitter.close() == ['{"b":']


def test_a_bare_event_and_a_wrapped_one_are_alerts() -> None:
    bare = parse_alert(json.dumps(EVENT), "stdin#1")
    wrapped = parse_alert(json.dumps({"alert": {"alert_type": "gold", "nested": {"x": 1}}, "event": EVENT}), "f")
    assert bare.meta == {} and bare.run_id == EVENT["run_id"]
    assert wrapped.classifiers() == {
        "alert_type": "gold",
        "source": "alert-hook",
        "run_id": EVENT["run_id"],
        "event_id": EVENT["event_id"],
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"alert": 3, "event": {}}', '"alert" must be an object'),
        ('{"run_id": 1}', "event invalid"),
        (json.dumps({"alert": {"run_id": -5}, "event": EVENT}), "alert.run_id -5 differs"),
    ],
)
def test_an_invalid_alert_says_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidAlert, match=reason):
        parse_alert(text, "x")


# -- scan requests ------------------------------------------------------------------------------------------


def test_a_scan_request_carries_the_options() -> None:
    args = submit_args(
        "--reco", "dummy", "--nsides", "8:0,64:4", "--priority", "7", "--tag", "who=me", "--tag", "n=3",
        "--cluster", "local=3", "--reco-option", "failure_rate=0.5",
    )  # fmt: skip
    request = scan_request(EVENT, args, {"source": "test"})
    assert request["reco_algo"] == "dummy"
    assert request["nsides"] == {"8": 0, "64": 4}
    assert request["priority"] == 7
    assert request["classifiers"] == {"source": "test", "who": "me", "n": 3}
    assert request["request_clusters"] == {"local": 3}
    assert request["reco_options"] == {"failure_rate": 0.5}
    assert request["real_or_simulated_event"] == "simulated"
    assert Event.from_dict(request["event_i3live_json"]).ref == Event.from_dict(EVENT).ref


@pytest.mark.parametrize("flags", [["--cluster", "local=0"], ["--tag", "novalue"], ["--nsides", "8"]])
def test_bad_request_options_are_usage_errors(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        submit_args(*flags)
    assert exited.value.code == Exit.USAGE
    assert "error:" in capsys.readouterr().err


def test_a_bad_event_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({**EVENT, "readout_window_ns": [5, 1]}))
    with pytest.raises(CliError, match=rf"{path}: .*readout_window_ns") as error:
        load_event(path)
    assert error.value.code == Exit.USAGE


# -- results and progress -----------------------------------------------------------------------------------


def test_fits_read_back_from_a_skymap_give_the_same_summary() -> None:
    event = simulate_track(random_track(3), 3)
    fits: dict[int, dict[int, PixelResult]] = {8: {}}
    for pixel in range(0, 768, 5):
        task = {"event_ref": event.ref, "reco_algo": "dummy", "nside": 8, "pixel": pixel, "seed": 0}
        fits[8][pixel] = PixelResult.from_dict(run_pixel_task(task, event))
    document = skymap(fits, event)
    again = MultiResolutionMap(fits_from_skymap(document)).summary()
    assert again == MultiResolutionMap(fits).summary()


def test_the_progress_line_shows_nsides_pilots_rate_and_eta() -> None:
    nsides = {
        "64": {"done": 10, "requested": 40, "expected": 40},
        "8": {"done": 768, "requested": 768, "expected": 768},
    }
    progress = {"nsides": nsides, "tasks_done": 778, "tasks_expected": 808, "rate_per_second": 12.5, "eta_seconds": 3}
    status = {"ewms": {"pilots": {"local": {"running": 2, "idle": 1}, "other": {"running": 1}}}}
    snap = Snapshot("s1", "IN_PROGRESS__PARTIAL_RESULT_GENERATED", "", False, progress, pilots_running(status))
    line = snap.line()
    assert "8: 768/768  64: 10/40" in line
    assert "3 pilots running" in line and "12.5 tasks/s" in line and "ETA 3s" in line
    plain = io.StringIO()
    ProgressLine(plain).show(snap)
    assert plain.getvalue() == line + "\n"


# -- connection and errors ----------------------------------------------------------------------------------


def test_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("SKYDRIVER_URL", "http://env:1")
    monkeypatch.setenv("SKYDRIVER_TOKEN", "from-env")
    args = parser().parse_args(["scan", "status", "x"])
    assert api.connection_from(args) == api.Connection("http://env:1", "from-env")
    args = parser().parse_args(["scan", "status", "x", "--url", "http://flag:2/", "--token-file", str(token_file)])
    connection = api.connection_from(args)
    assert (connection.url, connection.token) == ("http://flag:2", "from-file")
    assert "from-file" not in repr(connection)


@pytest.mark.parametrize(
    ("status", "words"), [(401, "token is missing, expired"), (403, "lacks the role"), (404, "Not Found")]
)
def test_refusals_read_as_one_line(status: int, words: str) -> None:
    message = api.refusal_message(ServiceRefused(status, "no"), "scan abc")
    assert f"{status}" in message and words in message and "\n" not in message


# -- local mode's files and processes -----------------------------------------------------------------------


def test_the_deployment_record_is_private_and_round_trips(tmp_path: Path) -> None:
    deployment = Deployment("r", "http://a", "http://b", "/t", "/w", [ServiceRecord("wms", 1, "/l", "http://b")])
    path = deployment.save(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Deployment.load(tmp_path) == deployment
    Deployment.forget(tmp_path)
    assert Deployment.load(tmp_path) is None


def test_the_supervisor_stops_a_child_and_what_it_started(tmp_path: Path) -> None:
    """A grandchild in a session of its own, like a pilot or a scanner, is found by the marker and stopped."""
    marker = f"test-{os.getpid()}"
    fifo = tmp_path / "grandchild"
    os.mkfifo(fifo)
    (tmp_path / "sleeper.py").write_text(
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(fifo)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    supervisor = Supervisor(tmp_path / "logs", marker)
    child = supervisor.start("sleeper", "sleeper", {"PYTHONPATH": str(tmp_path)})
    grandchild = int(fifo.read_text())  # blocks until the child has started its own child
    assert carries_marker(grandchild, marker) and carries_marker(child.proc.pid, marker)
    supervisor.check()
    supervisor.stop_all(grace=5)
    assert child.proc.returncode is not None
    assert leftovers(marker) == []


def test_a_child_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", f"test-{os.getpid()}")
    child = supervisor.start("broken", "no_such_module_here", {})
    child.proc.wait()
    with pytest.raises(CliError, match=r"broken exited with code 1(.|\n)*No module named") as error:
        supervisor.check()
    assert error.value.code == Exit.SERVICES
    supervisor.stop_all(grace=1)
