"""What happens to a scan, in one place, whoever asks: the routes, the starter or the watchdog.

A scan is created (request, event, manifest — the manifest last, so it only ever exists with its
parts), started by the starter, reported on by its scanner, and ends finished, failed or stopped.
Whenever it ends it is marked `cleanup_pending`; `clean_up` then tells the WMS (finished or abort)
and stops the scanner, and keeps the mark until both are done, so a WMS that is down at that
moment is simply asked again by the watchdog's next pass.
"""

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from ewms_rest.client import ServiceRefused, ServiceUnavailable
from ewms_rest.loops import Waker
from ewms_rest.tokens import mint_token

from .auth import SCAN_ID_CLAIM, Role
from .config import Config
from .database import Database
from .ewms import EWMSClient
from .launchers import LauncherError, ScannerInstance, ScannerLauncher
from .scan_request import ScanRequest
from .states import FINISHED, OVER, ScanState, stopped

LOGGER = logging.getLogger(__name__)
PENDING_WORKFLOW = "pending-ewms"  # upstream's placeholder until the workflow exists
SCANNER_TOKEN_LIFETIME = 30 * 24 * 3600  # longer than any scan; a restart mints a new one
PROGRESS_INTERVAL = 5
RESULT_INTERVAL = 30
Doc = dict[str, Any]


@dataclasses.dataclass
class Wakers:
    """The loops a route can hurry: a new scan for the starter, a scan that ended for the watchdog."""

    starter: Waker = dataclasses.field(default_factory=Waker)
    watchdog: Waker = dataclasses.field(default_factory=Waker)


class Scans:
    """Scan life-cycle operations over the database, the WMS and the launcher."""

    def __init__(
        self,
        config: Config,
        db: Database,
        ewms: EWMSClient,
        launcher: ScannerLauncher,
        clock: Callable[[], float],
        versions: dict[str, str],
    ) -> None:
        self.config = config
        self.db = db
        self.ewms = ewms
        self.launcher = launcher
        self.clock = clock
        self.versions = versions
        self.wakers = Wakers()
        self.callback_url = config.callback_url(config.port)  # the server sets the bound port's URL

    # -- creating ------------------------------------------------------------------------------

    async def create(self, request: ScanRequest, submitted_by: str, rescan_of: str | None = None) -> Doc:
        """Store the request, its event and a new manifest in the backlog; the manifest."""
        scan_id = uuid.uuid4().hex
        now = self.clock()
        await self.db.events.put(request.i3_event_id, request.event.to_dict())
        await self.db.requests.insert({"scan_id": scan_id, "i3_event_id": request.i3_event_id, **request.fields})
        manifest = self._new_manifest(scan_id, request, submitted_by, rescan_of, now)
        await self.db.manifests.insert(manifest)
        LOGGER.info(
            "scan %s requested by %s: %s on run %d event %d, priority %d%s",
            scan_id, submitted_by, request.fields["reco_algo"], request.event.run_id, request.event.event_id,
            request.fields["priority"], f" (rescan of {rescan_of})" if rescan_of else "",
        )  # fmt: skip
        self.wakers.starter.wake()
        return await self._manifest(scan_id)

    def _new_manifest(
        self, scan_id: str, request: ScanRequest, submitted_by: str, rescan_of: str | None, now: float
    ) -> Doc:
        fields, event = request.fields, request.event
        return {
            "scan_id": scan_id,
            "timestamp": now,
            "last_updated": now,
            "is_deleted": False,
            "i3_event_id": request.i3_event_id,
            "event_metadata": {
                "run_id": event.run_id,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "mjd": event.mjd,
                "is_real_event": fields["real_or_simulated_event"] == "real",
            },
            "scan_metadata": None,
            "ewms_workflow_id": PENDING_WORKFLOW,
            "ewms_address": self.config.wms_url,
            "ewms_deactivated": None,
            "progress": None,
            "classifiers": fields["classifiers"],
            "priority": fields["priority"],
            "docker_tag": fields["docker_tag"],
            "reco_algo": fields["reco_algo"],
            "versions": {**self.versions, **self._images(fields["docker_tag"])},
            "replaced_by_scan_id": None,
            "rescan_of": rescan_of,
            "scan_state": str(ScanState.PENDING__PRESTARTUP),
            "complete": False,
            "submitted_by": submitted_by,
            "scanner": None,
            "dead_tasks": [],
            "error": None,
        }

    def _images(self, docker_tag: str) -> dict[str, str]:
        """The images this scan will run ("host": this machine's Python, no image)."""
        config = self.config
        scanner = f"{config.k8s_scanner_image}:{docker_tag}" if config.launcher == "k8s" else "host"
        reco = "host" if config.reco_image == "host" else f"{config.reco_image}:{docker_tag}"
        return {"scanner_image": scanner, "reco_image": reco}

    async def _manifest(self, scan_id: str) -> Doc:
        manifest = await self.db.manifests.get(scan_id)
        assert manifest is not None, f"scan {scan_id} vanished"
        return manifest

    # -- the scanner ---------------------------------------------------------------------------

    def scanner_token(self, scan_id: str) -> str:
        """A `system` token for the scanner that reaches only its own scan (local mode mints one per start)."""
        config = self.config
        if config.auth_secret is None:
            assert config.scanner_token is not None  # Config requires it with an OpenID provider
            return config.scanner_token
        role: Any = [str(Role.SYSTEM)]
        for part in reversed(config.auth_role_claim.split(".")):  # a dotted claim is a nested one
            role = {part: role}
        return mint_token(
            config.auth_secret,
            f"scanner-{scan_id}",
            None,
            issuer=config.auth_issuer,
            algorithm=config.auth_algorithm,
            lifetime_seconds=SCANNER_TOKEN_LIFETIME,
            claims={**role, SCAN_ID_CLAIM: scan_id},
        )

    async def scanner_instance(self, scan_id: str, attempt: int) -> ScannerInstance:
        """What the launcher runs: the request's sizes and the SKYSCAN_* environment, credentials included."""
        request = await self.db.requests.get(scan_id)
        profiles = await self.db.mqprofiles.get(scan_id)
        assert request is not None and profiles is not None, f"scan {scan_id} has no request or queues"
        env = {k: str(v) for k, v in request["scanner_server_env"].items()}  # ours below win
        env.update(
            SKYSCAN_SCAN_ID=scan_id,
            SKYSCAN_SKYDRIVER_URL=self.callback_url,
            SKYSCAN_SKYDRIVER_TOKEN=self.scanner_token(scan_id),
            SKYSCAN_MQ_PROFILES=json.dumps(profiles),
            SKYSCAN_LOG_LEVEL=self.config.log_level,
        )
        env.setdefault("SKYSCAN_PROGRESS_INTERVAL", str(PROGRESS_INTERVAL))
        env.setdefault("SKYSCAN_RESULT_INTERVAL", str(RESULT_INTERVAL))
        return ScannerInstance(
            scan_id,
            env,
            docker_tag=request["docker_tag"],
            memory_bytes=request["scanner_server_memory_bytes"],
            attempt=attempt,
        )

    def scanner_record(self, handle: str, restarts: int) -> Doc:
        """The manifest's `scanner` for a scanner just started (its start counts as its first sign of life)."""
        now = self.clock()
        return {
            "launcher": self.launcher.name,
            "handle": handle,
            "started_at": now,
            "last_heartbeat": now,
            "restarts": restarts,
            "stopped_at": None,
        }

    # -- ending --------------------------------------------------------------------------------

    async def end(self, scan_id: str, changes: Doc, where: Doc | None = None) -> Doc | None:
        """Apply `changes` that end the scan (if it still matches `where`) and mark it for cleaning up."""
        manifest = await self.db.manifests.update(scan_id, {**changes, "cleanup_pending": True}, self.clock(), where)
        if manifest is not None:
            self.wakers.watchdog.wake()
        return manifest

    async def fail(self, scan_id: str, state: ScanState, reason: str) -> Doc | None:
        """Fail a scan that is not over yet (None if it already was)."""
        LOGGER.warning("scan %s: %s (%s)", scan_id, state, reason)
        where = {"scan_state": {"$nin": [str(s) for s in OVER]}}
        return await self.end(scan_id, {"scan_state": str(state), "error": reason}, where)

    async def stop(self, manifest: Doc, reason: str, *, delete: bool) -> Doc:
        """Stop the scan now (abort its workflow, stop its scanner) and, for DELETE, mark it deleted."""
        scan_id = manifest["scan_id"]
        changes: Doc = {"scan_state": str(stopped(manifest["scan_state"]))}
        if manifest["scan_state"] not in OVER:
            changes["error"] = reason
        if delete:
            changes["is_deleted"] = True
        await self.end(scan_id, changes)
        LOGGER.info("scan %s stopped%s: %s", scan_id, " and deleted" if delete else "", reason)
        internal = await self.db.manifests.get_internal(scan_id)
        if internal is not None:
            await self.clean_up(internal)
        return await self._manifest(scan_id)

    async def clean_up(self, doc: Doc) -> bool:
        """Deactivate the scan's workflow and stop its scanner, whichever is still to do; True once both are."""
        scan_id = doc["scan_id"]
        done = await self._deactivate_workflow(doc)
        done = await self._stop_scanner(doc) and done
        if done:
            await self.db.manifests.cleaned_up(scan_id)
        return done

    async def _deactivate_workflow(self, doc: Doc) -> bool:
        """`finished` for a scan that finished, `abort` for any other; True when there is nothing left to ask."""
        workflow_id = doc["ewms_workflow_id"]
        if workflow_id == PENDING_WORKFLOW or doc["ewms_deactivated"]:
            return True
        finished = doc["scan_state"] in FINISHED  # deleting a finished scan does not undo its success
        try:
            if finished:
                await self.ewms.finished(workflow_id)
            else:
                await self.ewms.abort(workflow_id)
        except ServiceUnavailable as exc:
            LOGGER.warning("scan %s: workflow %s not deactivated yet: %s", doc["scan_id"], workflow_id, exc)
            return False
        except ServiceRefused as exc:  # e.g. the WMS does not know it: nothing of it is running there
            LOGGER.warning("scan %s: the WMS refused to deactivate workflow %s: %s", doc["scan_id"], workflow_id, exc)
        reason = "FINISHED" if finished else "ABORTED"
        await self.db.manifests.update(doc["scan_id"], {"ewms_deactivated": reason}, self.clock())
        LOGGER.info("scan %s: workflow %s %s", doc["scan_id"], workflow_id, reason.lower())
        return True

    async def _stop_scanner(self, doc: Doc) -> bool:
        """Stop the scanner of a scan that did not finish (a finishing scanner exits by itself)."""
        scanner = doc.get("scanner")
        if not scanner or scanner.get("stopped_at") is not None or doc["scan_state"] in FINISHED:
            return True
        try:
            await self.launcher.stop(scanner["handle"])
        except LauncherError as exc:
            LOGGER.warning("scan %s: scanner %s not stopped yet: %s", doc["scan_id"], scanner["handle"], exc)
            return False
        await self.db.manifests.update(doc["scan_id"], {"scanner.stopped_at": self.clock()}, self.clock())
        LOGGER.info("scan %s: scanner %s stopped", doc["scan_id"], scanner["handle"])
        return True
