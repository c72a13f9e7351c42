"""Optional HTCondor chirp: the pilot's counters as job attributes (or job-log lines).

With `EWMS_PILOT_HTCHIRP` true and `condor_chirp` reachable, the pilot pushes the same
attributes upstream does (`HTChirpEWMSPilot*`), so a TMS reading job ClassAds sees progress
without parsing logs. Chirp is advisory: if it is off, missing or failing, the pilot works
the same, it only logs why chirping stopped. Updates are rate limited by
`EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL`, because each one is a round trip to the schedd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from typing import Any

LOGGER = logging.getLogger(__name__)

ATTR_PREFIX = "HTChirpEWMSPilot"
CHIRP_TIMEOUT = 5.0


def classad_literal(value: Any) -> str:
    """Numbers are ClassAd numbers; everything else is a quoted ClassAd string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def find_condor_chirp() -> str | None:
    """`condor_chirp` on PATH, or in the libexec directory HTCondor jobs usually have."""
    found = shutil.which("condor_chirp")
    if found:
        return found
    for libexec in (os.environ.get("_CONDOR_LIBEXEC", ""), "/usr/libexec/condor"):
        candidate = os.path.join(libexec, "condor_chirp") if libexec else ""
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Chirper:
    """Collects attribute updates and sends them, rate limited, in the background."""

    def __init__(self, enabled: bool, dest: str = "JOB_ATTR", interval: float = 60.0) -> None:
        self._exe = find_condor_chirp() if enabled else None
        if enabled and self._exe is None:
            LOGGER.warning("EWMS_PILOT_HTCHIRP is set but condor_chirp was not found: not chirping")
        self._dest = dest
        self._interval = interval
        self._backlog: dict[str, Any] = {}
        self._last_sent = 0.0
        self._sending: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._exe is not None

    def set(self, **attrs: Any) -> None:
        """Queue attributes (names without the prefix) and send if the rate limit allows."""
        if not self.active:
            return
        self._backlog.update({f"{ATTR_PREFIX}{k}": v for k, v in attrs.items()})
        if time.monotonic() - self._last_sent >= self._interval and self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_backlog())

    async def flush(self) -> None:
        """Send everything now (at exit), whatever the rate limit."""
        if not self.active:
            return
        if self._sending is not None:
            await self._sending
        await self._send_backlog()

    async def _send_backlog(self) -> None:
        try:
            batch, self._backlog = self._backlog, {}
            if batch:
                batch[f"{ATTR_PREFIX}LastUpdatedTimestamp"] = int(time.time())
            for name, value in batch.items():
                await self._chirp(name, value)
            self._last_sent = time.monotonic()
        finally:
            self._sending = None

    async def _chirp(self, name: str, value: Any) -> None:
        assert self._exe is not None
        if self._dest == "JOB_EVENT_LOG":
            argv = [self._exe, "ulog", f"{name}: {classad_literal(str(value))}"]
        else:
            argv = [self._exe, "set_job_attr_delayed", name, classad_literal(value)]
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            async with asyncio.timeout(CHIRP_TIMEOUT):
                _, err = await proc.communicate()
            if proc.returncode:
                LOGGER.warning("condor_chirp %s failed: %s", name, err.decode(errors="replace").strip())
        except Exception as exc:  # chirping is advisory: never let it hurt the pilot
            LOGGER.warning("condor_chirp %s failed: %r", name, exc)
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
