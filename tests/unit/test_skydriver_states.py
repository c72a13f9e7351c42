"""skydriver.states: what a stop leaves behind, how a scan finishes, the status sentence."""

import pytest

from skydriver.states import FINISHED, OVER, RUNNING, ScanState, describe, finished, stopped

S = ScanState


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (S.PENDING__PRESTARTUP, S.STOPPED__PRESTARTUP),
        (S.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP, S.STOPPED__PARTIAL_RESULT_GENERATED),
        (S.IN_PROGRESS__PARTIAL_RESULT_GENERATED, S.STOPPED__PARTIAL_RESULT_GENERATED),
        (S.SCAN_FINISHED_SUCCESSFULLY, S.SCAN_FINISHED_SUCCESSFULLY),
        (S.FAILED__WORKFLOW, S.FAILED__WORKFLOW),
        (S.STOPPED__PRESTARTUP, S.STOPPED__PRESTARTUP),
    ],
)
def test_a_stop_keeps_the_state_of_a_scan_that_is_over(state: ScanState, after: ScanState) -> None:
    assert stopped(state) == after


def test_every_state_is_waiting_running_or_over_and_has_a_sentence() -> None:
    assert set(ScanState) == {S.PENDING__PRESTARTUP} | RUNNING | OVER
    assert not RUNNING & OVER
    assert finished(False) == S.SCAN_FINISHED_SUCCESSFULLY and finished(True) == S.SCAN_FINISHED__PARTIAL
    assert {finished(False), finished(True)} == FINISHED
    for state in ScanState:
        assert describe({"scan_state": state})


def test_the_sentence_says_how_far_why_and_whether_deleted() -> None:
    running = {
        "scan_state": "IN_PROGRESS__PARTIAL_RESULT_GENERATED",
        "progress": {"tasks_done": 5, "tasks_expected": 9},
    }
    assert describe(running) == "in progress: a partial result is available; 5 of 9 pixel tasks done"
    failed = {"scan_state": "FAILED__SCANNER", "error": "no report for 130 s", "is_deleted": True}
    assert describe(failed) == (
        "failed: the scanner died or stopped reporting; reason: no report for 130 s; the scan is deleted"
    )
