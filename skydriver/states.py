"""A scan's life as one field, `scan_state`, kept up to date on every change.

Clients poll `GET /scan/{id}/status` and act on the state (upstream SkyDriver's names, so their
scripts keep working); the loops select their work by it. The groups below are what the code
asks about a state, so no caller spells out lists of states itself.

    PENDING__PRESTARTUP ──starter──▶ PENDING__WAITING_ON_SCANNER_SERVER_STARTUP ──first PATCH──▶
    PENDING__WAITING_ON_FIRST_PIXEL_RECO ──partial result──▶ IN_PROGRESS__PARTIAL_RESULT_GENERATED
    ──final result──▶ SCAN_FINISHED_SUCCESSFULLY | SCAN_FINISHED__PARTIAL
    any waiting/running state ──▶ FAILED__SCANNER | FAILED__WORKFLOW | STOPPED__*
"""

import enum
from typing import Any


class ScanState(enum.StrEnum):
    PENDING__PRESTARTUP = "PENDING__PRESTARTUP"
    PENDING__WAITING_ON_SCANNER_SERVER_STARTUP = "PENDING__WAITING_ON_SCANNER_SERVER_STARTUP"
    PENDING__WAITING_ON_FIRST_PIXEL_RECO = "PENDING__WAITING_ON_FIRST_PIXEL_RECO"
    IN_PROGRESS__PARTIAL_RESULT_GENERATED = "IN_PROGRESS__PARTIAL_RESULT_GENERATED"
    SCAN_FINISHED_SUCCESSFULLY = "SCAN_FINISHED_SUCCESSFULLY"
    SCAN_FINISHED__PARTIAL = "SCAN_FINISHED__PARTIAL"
    FAILED__SCANNER = "FAILED__SCANNER"
    FAILED__WORKFLOW = "FAILED__WORKFLOW"
    STOPPED__PRESTARTUP = "STOPPED__PRESTARTUP"
    STOPPED__PARTIAL_RESULT_GENERATED = "STOPPED__PARTIAL_RESULT_GENERATED"


S = ScanState
# a scanner runs (or should): the watchdog's business
RUNNING = frozenset({S.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP, S.PENDING__WAITING_ON_FIRST_PIXEL_RECO,
                     S.IN_PROGRESS__PARTIAL_RESULT_GENERATED})  # fmt: skip
FINISHED = frozenset({S.SCAN_FINISHED_SUCCESSFULLY, S.SCAN_FINISHED__PARTIAL})
FAILED = frozenset({S.FAILED__SCANNER, S.FAILED__WORKFLOW})
STOPPED = frozenset({S.STOPPED__PRESTARTUP, S.STOPPED__PARTIAL_RESULT_GENERATED})
# nothing will happen to the scan any more, except cleaning up its workflow and scanner
OVER = FINISHED | FAILED | STOPPED
# the scanner has reported at least once: a PATCH no longer moves the state
REPORTED = frozenset({S.PENDING__WAITING_ON_FIRST_PIXEL_RECO, S.IN_PROGRESS__PARTIAL_RESULT_GENERATED})

_MESSAGES = {
    S.PENDING__PRESTARTUP: "waiting in the backlog for a scanner to be started",
    S.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP: "workflow requested, scanner launched; waiting for its first report",
    S.PENDING__WAITING_ON_FIRST_PIXEL_RECO: "the scanner is running; waiting for the first pixel reconstructions",
    S.IN_PROGRESS__PARTIAL_RESULT_GENERATED: "in progress: a partial result is available",
    S.SCAN_FINISHED_SUCCESSFULLY: "finished: the final result is available",
    S.SCAN_FINISHED__PARTIAL: "finished, but some pixel tasks failed for good; their pixels are missing (dead_tasks)",
    S.FAILED__SCANNER: "failed: the scanner died or stopped reporting",
    S.FAILED__WORKFLOW: "failed: the workflow management service refused the workflow",
    S.STOPPED__PRESTARTUP: "stopped before it started",
    S.STOPPED__PARTIAL_RESULT_GENERATED: "stopped while running; any partial result is kept",
}


def stopped(state: str) -> ScanState:
    """The state a stop (DELETE, rescan with abort_first) leaves behind; a scan that is over keeps its own."""
    if state in OVER:
        return ScanState(state)
    if state == S.PENDING__PRESTARTUP:
        return S.STOPPED__PRESTARTUP
    return S.STOPPED__PARTIAL_RESULT_GENERATED


def finished(any_dead_tasks: bool) -> ScanState:
    """The state of a scan whose final result came in: partial when some pixels could not be reconstructed."""
    return S.SCAN_FINISHED__PARTIAL if any_dead_tasks else S.SCAN_FINISHED_SUCCESSFULLY


def describe(manifest: dict[str, Any]) -> str:
    """A sentence for `GET /scan/{id}/status`: the state, how far along, and why it failed."""
    state = ScanState(manifest["scan_state"])
    parts = [_MESSAGES[state]]
    progress = manifest.get("progress") or {}
    if state in RUNNING and progress.get("tasks_expected"):
        parts.append(f"{progress.get('tasks_done', 0)} of {progress['tasks_expected']} pixel tasks done")
    if manifest.get("error"):
        parts.append(f"reason: {manifest['error']}")
    if manifest.get("is_deleted"):
        parts.append("the scan is deleted")
    return "; ".join(parts)
