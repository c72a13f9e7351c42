"""Where local mode keeps its files, and the record of the services a `local-scan` started.

The record (`<home>/run/local-scan.json`, mode 600) is written as soon as the services are up and
kept while they run: it is what `local-scan --stop` stops (after `--keep-running`, or after a
local-scan that was itself killed) and where the `scan` commands find the URL and token when none
is given, so the README's tour needs no flags. Once the services are stopped it becomes
`last-run.json`. It holds paths and pids, never a secret: the token has its own file, mode 600 too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

RECORD = "local-scan.json"
LAST_RUN = "last-run.json"  # the record of a run whose services were stopped: what tests check is gone
# set in every child's environment (and so inherited by scanners and pilots): how leftovers are found; no
# service prefix, because the services strip their own (SKYDRIVER_*, TMS_*) from what they pass on
MARKER_VARIABLE = "LOCAL_SCAN_RUN"


def checkout_root() -> Path | None:
    """The repository this package runs from, when it runs from a checkout (scripts/dev-services is there)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "scripts" / "dev-services").is_file() else None


def default_home() -> Path:
    """`.local/` of the checkout, else of the working directory: one place for logs, state, scans."""
    return (checkout_root() or Path.cwd()) / ".local"


def write_private(path: Path, text: str) -> Path:
    """Write `text` readable by its owner only, from the first byte on (no window with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


@dataclasses.dataclass(frozen=True)
class ServiceRecord:
    name: str
    pid: int
    log: str
    url: str | None = None


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Services a `local-scan` started: enough to reach them, and to stop exactly them later."""

    run_id: str  # also the value of MARKER_VARIABLE in the services' environment
    skydriver_url: str
    wms_url: str
    token_file: str
    wms_admin_token_file: str
    services: list[ServiceRecord]

    def read_tokens(self) -> tuple[str, str]:
        """(skydriver `user` token, WMS `admin` token), from their files."""
        return Path(self.token_file).read_text().strip(), Path(self.wms_admin_token_file).read_text().strip()

    @staticmethod
    def path(home: Path) -> Path:
        return home / "run" / RECORD

    def save(self, home: Path) -> Path:
        return write_private(self.path(home), json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, home: Path) -> Deployment | None:
        """The record under `home`, or None when there is none (or it is unreadable: nothing to act on)."""
        try:
            doc: dict[str, Any] = json.loads(cls.path(home).read_text())
            services = [ServiceRecord(**s) for s in doc.pop("services")]
            return cls(services=services, **doc)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    @staticmethod
    def forget(home: Path) -> None:
        """The services are gone: keep the record as `last-run.json`, for a look at what ran."""
        with contextlib.suppress(FileNotFoundError):
            Deployment.path(home).replace(home / "run" / LAST_RUN)
