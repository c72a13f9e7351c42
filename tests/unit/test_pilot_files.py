"""File layout, infile/outfile rules, error tails and the summary document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ewms_pilot.errors import (
    CallableError,
    ContainerRunError,
    InvalidDataForInfileException,
    InvalidDataFromOutfileException,
    TaskTimeoutError,
    error_summary,
    read_tail,
)
from ewms_pilot.io import read_outfile, write_infile
from ewms_pilot.layout import PilotLayout, safe_event_id
from ewms_pilot.summary import Failure, Stats, failure_report, percentile, runtime_stats, write_summary

# -- layout ---------------------------------------------------------------------------------


def test_layout_matches_upstream(tmp_path: Path) -> None:
    layout = PilotLayout.from_parent(f"{tmp_path}/", ".JSON", "txt")
    assert layout.root == tmp_path / "ewms-pilot-data"
    assert layout.data_hub == tmp_path / "ewms-pilot-data" / "data-hub"
    dirs = layout.event("abc123")
    assert dirs.infile == layout.root / "abc123" / "task-io" / "infile-abc123.json"
    assert dirs.outfile == layout.root / "abc123" / "task-io" / "outfile-abc123.txt"
    assert dirs.stdoutfile == layout.root / "abc123" / "outputs" / "stdoutfile"
    assert dirs.stderrfile == layout.root / "abc123" / "outputs" / "stderrfile"


def test_empty_parent_is_root_as_upstream() -> None:
    assert PilotLayout.from_parent("").root == Path("/ewms-pilot-data")


def test_relative_parent_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTCondor jobs get "." (their scratch dir): tasks and bind mounts need the absolute path."""
    monkeypatch.chdir(tmp_path)
    assert PilotLayout.from_parent(".").root == tmp_path / "ewms-pilot-data"


def test_init_dirs(tmp_path: Path) -> None:
    layout = PilotLayout.from_parent(str(tmp_path))
    layout.prepare()
    dirs = layout.init()
    assert dirs.base.parent == tmp_path / "ewms-pilot-data"
    assert dirs.base.name.startswith("init-") and len(dirs.base.name) == len("init-") + 32
    dirs.create(with_task_io=False)
    assert dirs.outputs.is_dir() and not dirs.task_io.exists()


def test_create_and_remove(tmp_path: Path) -> None:
    layout = PilotLayout.from_parent(str(tmp_path))
    layout.prepare()
    dirs = layout.event("e1")
    dirs.create()
    assert dirs.task_io.is_dir() and dirs.outputs.is_dir()
    dirs.remove()
    assert not dirs.base.exists()
    assert layout.data_hub.is_dir()


def test_a_kept_event_dir_is_not_reused(tmp_path: Path) -> None:
    layout = PilotLayout.from_parent(str(tmp_path))
    layout.prepare()
    layout.event("e1").create()
    again = layout.event("e1")
    assert again.event_id == "e1-1"
    assert again.infile.name == "infile-e1-1.in"


@pytest.mark.parametrize(("raw", "safe"), [("abc-1.2_x", "abc-1.2_x"), ("../../etc", "_.._etc"), ("a b/c", "a_b_c")])
def test_event_ids_are_safe(raw: str, safe: str) -> None:
    assert safe_event_id(raw) == safe


def test_missing_event_id_gets_a_uuid() -> None:
    assert len(safe_event_id(None)) == 32
    assert safe_event_id("") != safe_event_id("")


# -- infile / outfile -----------------------------------------------------------------------


def test_string_is_written_verbatim_whatever_the_extension(tmp_path: Path) -> None:
    for name in ("infile-1.in", "infile-2.json", "infile-3"):
        write_infile('{"not": "parsed"}\n', tmp_path / name)
        assert (tmp_path / name).read_text() == '{"not": "parsed"}\n'


def test_json_value_goes_to_json_infile(tmp_path: Path) -> None:
    write_infile({"a": [1, 2.5, None]}, tmp_path / "infile-x.json")
    assert json.loads((tmp_path / "infile-x.json").read_text()) == {"a": [1, 2.5, None]}


@pytest.mark.parametrize("data", [{"a": 1}, [1, 2], 3, None, True])
def test_json_value_to_other_infile_fails_clearly(tmp_path: Path, data: object) -> None:
    with pytest.raises(InvalidDataForInfileException) as info:
        write_infile(data, tmp_path / "infile-x.in")
    assert ".json" in str(info.value) and "infile-x.in" in str(info.value)


def test_bytes_are_written_verbatim(tmp_path: Path) -> None:
    write_infile(b"\x00\xff", tmp_path / "infile-x.bin")
    assert (tmp_path / "infile-x.bin").read_bytes() == b"\x00\xff"


def test_outfile_rules(tmp_path: Path) -> None:
    (tmp_path / "o.json").write_text('{"llh": 1.5}')
    (tmp_path / "o.out").write_text('{"llh": 1.5}\n')
    assert read_outfile(tmp_path / "o.json").data == {"llh": 1.5}
    assert read_outfile(tmp_path / "o.out").data == '{"llh": 1.5}\n'
    missing = read_outfile(tmp_path / "nope.json")
    assert missing.present is False


def test_bad_outfiles(tmp_path: Path) -> None:
    (tmp_path / "o.json").write_text("{oops")
    (tmp_path / "o.out").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidDataFromOutfileException, match="not valid JSON"):
        read_outfile(tmp_path / "o.json")
    with pytest.raises(InvalidDataFromOutfileException, match="UTF-8"):
        read_outfile(tmp_path / "o.out")


# -- error tails ------------------------------------------------------------------------------

TRACEBACK = """\
starting up
Traceback (most recent call last):
  File "a.py", line 1, in <module>
    first()
ValueError: first problem
later noise
Traceback (most recent call last):
  File "b.py", line 9, in <module>
    reco()
  File "b.py", line 3, in reco
    raise RuntimeError("table missing")
RuntimeError: table missing
cleanup line after the traceback
"""


def test_last_traceback_is_extracted() -> None:
    summary = error_summary(TRACEBACK)
    assert summary.startswith("Traceback (most recent call last):")
    assert summary.endswith("RuntimeError: table missing")
    assert "first problem" not in summary


def test_without_traceback_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(30)) + "\n\n"
    summary = error_summary(text)
    assert summary.splitlines() == [f"line {i}" for i in range(20, 30)]
    assert error_summary("") == "<no stderr>"


def test_read_tail_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "stderrfile"
    path.write_text("x" * 200_000 + "\nthe end\n")
    assert read_tail(path, 100).endswith("the end\n")
    assert len(read_tail(path, 100)) == 100
    assert read_tail(tmp_path / "missing") == ""


def test_okay_error_names() -> None:
    assert {"TaskTimeoutError", "ContainerRunError", "TaskError"} <= TaskTimeoutError("t").names()
    err = CallableError(KeyError("k"), "tb")
    assert err.kind == "KeyError"
    assert {"KeyError", "LookupError", "CallableError"} <= err.names()
    assert ContainerRunError("x").kind == "ContainerRunError"


# -- summary ---------------------------------------------------------------------------------


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 90) == 90 and percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    stats = runtime_stats([3.0, 1.0, 2.0])
    assert stats["count"] == 3 and stats["p50"] == 2 and stats["max"] == 3 and stats["mean"] == 2
    assert runtime_stats([])["p50"] is None


def test_summary_document(tmp_path: Path) -> None:
    stats = Stats()
    stats.record_received(redelivered=False)
    stats.record_received(redelivered=True)
    stats.record_done(0.5, published=True)
    stats.record_done(0.25, published=False)
    stats.record_failure(Failure("e3", "ContainerRunError", "task failed (exit code 3)", 3, "boom"))
    doc = stats.summary("queue-idle", 1)
    assert doc["stop_reason"] == "queue-idle" and doc["exit_code"] == 1
    assert doc["events_done"] == 2 and doc["events_published"] == 1 and doc["events_done_without_output"] == 1
    assert doc["events_failed"] == 1 and doc["events_retried"] == 1
    assert doc["task_runtime_seconds"]["p50"] == 0.25
    assert doc["failures"][0]["exit_code"] == 3
    path = tmp_path / "sub" / "summary.json"
    write_summary(doc, str(path))
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))


def test_failure_report_names_each_task() -> None:
    failures = [Failure(f"e{i}", "ContainerRunError", f"task failed (exit code {i})", i, f"err {i}") for i in range(12)]
    report = failure_report(failures, 12).splitlines()
    assert report[0] == "12 TASK(S) FAILED" and report[-1] == "12 TASK(S) FAILED"
    assert sum(line.startswith("--- failed task") for line in report) == 10
    assert any("event e11" in line and "exit code 11" in line for line in report)
    assert "    err 11" in report
