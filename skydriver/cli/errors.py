"""Exit codes and the one error type the CLI raises: a message for a person, never a traceback.

Scripts branch on the exit code, people read the message; both are documented in docs/cli.md.
"""

import enum
import signal


class Exit(enum.IntEnum):
    OK = 0
    SCAN_NOT_FINISHED = 1  # the scan failed or was stopped
    USAGE = 2  # bad arguments or input files (argparse uses 2 as well)
    UNREACHABLE = 3  # no answer, a timeout, or a 5xx: try again later
    REFUSED = 4  # skydriver answered no: 400, 401, 403, 404, 409
    SERVICES = 5  # local-scan: a service did not start, or died


def interrupted(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + signal.Signals(signum).value


class CliError(Exception):
    """Something the user can act on: printed as one line, the process exits with `code`."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
