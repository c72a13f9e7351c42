"""Where a scan's scanner runs: the `ScannerLauncher` interface and the backends behind it.

Skydriver starts one scanner per scan and later asks whether it is still there, or stops it. How
that happens — a Kubernetes Job in production, a local process in local mode — is a backend's
business, one module each (as Parsl's providers or the TMS's schedulers), so the starter and the
watchdog never know which one runs. A backend hands back a *handle*, a plain string the manifest
stores, so a restarted skydriver can check on or stop a scanner it did not start itself.

Each backend module is the only importer of its client library; `make_launcher` imports the chosen
one lazily, so local mode runs without the `kubernetes` package installed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Config

# the scanner's variables that are credentials: kept out of logs, manifests and k8s Job specs
SECRET_ENV = frozenset({"SKYSCAN_SKYDRIVER_TOKEN", "SKYSCAN_MQ_PROFILES"})
GiB = 1024**3


class LauncherError(Exception):
    """The backend could not do what was asked (start refused, API unreachable); the message says why."""


@dataclasses.dataclass(frozen=True)
class ScannerInstance:
    """One scanner to run: its scan, its environment and what it may use.

    `env` holds credentials (`SECRET_ENV`), so it is kept out of `repr`. `attempt` counts the
    watchdog's restarts: each attempt is a distinct instance (its own Job name, its own state
    directory), so starting the same attempt twice finds the first one instead of making a twin.
    """

    scan_id: str
    env: Mapping[str, str] = dataclasses.field(repr=False)
    docker_tag: str = "latest"
    memory_bytes: int = GiB
    cpus: float = 1.0
    attempt: int = 0

    @property
    def name(self) -> str:
        """The instance's name: the scan id, plus the attempt once the watchdog has restarted it."""
        return self.scan_id if self.attempt == 0 else f"{self.scan_id}-r{self.attempt}"

    def secret_env(self) -> dict[str, str]:
        """The credentials among `env`."""
        return {k: v for k, v in self.env.items() if k in SECRET_ENV}

    def plain_env(self) -> dict[str, str]:
        """Everything in `env` that may be shown."""
        return {k: v for k, v in self.env.items() if k not in SECRET_ENV}


class ScannerLauncher(Protocol):
    """What skydriver needs from a place to run scanners."""

    name: str

    async def start(self, instance: ScannerInstance) -> str:
        """Start the scanner (or find the one already started for this attempt); returns its handle."""
        ...

    async def alive(self, handle: str) -> bool:
        """Whether the scanner behind `handle` is still running (or about to)."""
        ...

    async def stop(self, handle: str) -> None:
        """Make the scanner go away; stopping one that is already gone is not an error."""
        ...

    async def aclose(self) -> None:
        """Release the launcher's own resources (never the scanners: they outlive skydriver)."""
        ...


def make_launcher(config: Config) -> ScannerLauncher:
    """The backend `config.launcher` names, imported only when chosen."""
    if config.launcher == "k8s":
        from .k8s import K8sLauncher, KubernetesJobsAPI

        return K8sLauncher(
            KubernetesJobsAPI(),
            namespace=config.k8s_namespace,
            image=config.k8s_scanner_image,
            ttl_seconds=config.k8s_job_ttl_seconds,
        )
    from .local import LocalLauncher

    return LocalLauncher(Path(config.local_state_dir))
