"""The starter: claims taskforces pending here, submits their pilots, confirms to the WMS.

Never twice: a taskforce moves to `condor-submit` only when the WMS accepts the cluster id,
and the journal remembers a submitted-but-unconfirmed cluster across restarts, so a claim
handed back after a crash is confirmed, not submitted again. Never orphaned: if the WMS
refuses the confirmation (the workflow was stopped meanwhile), the cluster just submitted
is removed and the WMS is told why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ewms_rest.client import ServiceRefused

from .journal import Entry, Journal
from .schedulers import Scheduler
from .spec import Claim, SpecError, pilot_spec
from .wms import WMS

LOGGER = logging.getLogger(__name__)
PENDING_STARTER = "pending-starter"


def submission_record(entry: Entry) -> dict[str, Any]:
    """The body of the submission confirmation: the cluster and how it was submitted (redacted)."""
    assert entry.cluster_id is not None
    body: dict[str, Any] = {
        "cluster_id": entry.cluster_id,
        "n_workers": entry.n_workers,
        "submit_dict": entry.description,
        "submit_description": "\n".join(f"{k} = {v}" for k, v in entry.description.items())
        + f"\nqueue {entry.n_workers}",
    }
    if "log" in entry.description:
        body["job_event_log_fpath"] = entry.description["log"].replace("$(ClusterId)", str(entry.cluster_id))
    return body


class Starter:
    """One pass: settle the journal, then claim and start at most one taskforce."""

    def __init__(
        self,
        wms: WMS,
        scheduler: Scheduler,
        journal: Journal,
        *,
        host_command_image: str = "host",
        operator_env: dict[str, str] | None = None,
    ) -> None:
        self.wms = wms
        self.scheduler = scheduler
        self.journal = journal
        self.host_command_image = host_command_image
        self.operator_env = operator_env or {}

    async def step(self) -> bool:
        await self.settle_journal()
        answer = await self.wms.claim_pending_starter()
        if answer is None:
            return False
        await self.start(Claim.from_answer(answer))
        return True

    # -- the journal: clusters submitted but never confirmed --------------------------------------

    async def settle_journal(self) -> None:
        for entry in await asyncio.to_thread(self.journal.entries):
            await self._settle(entry)

    async def _settle(self, entry: Entry) -> None:
        """An entry whose taskforce is no longer pending here is confirmed already, or its cluster is an orphan."""
        uuid = entry.taskforce_uuid
        taskforce = await self.wms.taskforce(uuid)
        if taskforce is not None and taskforce["phase"] == PENDING_STARTER:
            return  # the claim hands it back to us: `start` finishes it
        if entry.cluster_id is None:
            LOGGER.error(
                "taskforce %s: the TMS stopped while submitting it and the WMS moved it on; if a cluster exists "
                "for it, remove it by hand (HTCondor: condor_rm -constraint 'EWMSTaskforceUUID == \"%s\"')",
                uuid, uuid,
            )  # fmt: skip
            await asyncio.to_thread(self.journal.forget, uuid)
        elif taskforce is not None and taskforce.get("cluster_id") == entry.cluster_id:
            await asyncio.to_thread(self.journal.forget, uuid)  # confirmed; only the answer was lost
        else:
            phase = "gone" if taskforce is None else taskforce["phase"]
            await self._remove_orphan(entry, f"the taskforce is {phase} at the WMS")

    async def _remove_orphan(self, entry: Entry, why: str) -> None:
        uuid, cluster_id = entry.taskforce_uuid, entry.cluster_id
        assert cluster_id is not None
        LOGGER.warning("taskforce %s: %s; removing the cluster %s submitted for it", uuid, why, cluster_id)
        await self.scheduler.cancel(cluster_id)
        try:
            await self.wms.report_submit_failed(
                uuid, f"{why}; the TMS removed the cluster {cluster_id} it had submitted"
            )
        except ServiceRefused as exc:
            LOGGER.info("taskforce %s: the WMS noted nothing more (%s)", uuid, exc)
        await asyncio.to_thread(self.journal.forget, uuid)

    # -- starting a claimed taskforce -------------------------------------------------------------

    async def start(self, claim: Claim) -> None:
        entry = await asyncio.to_thread(self.journal.get, claim.uuid)
        if entry is not None and entry.cluster_id is not None:
            LOGGER.info("taskforce %s: confirming cluster %s submitted before a restart", claim.uuid, entry.cluster_id)
        elif entry is not None:
            await asyncio.to_thread(self.journal.forget, claim.uuid)
            await self._fail(claim.uuid, "the TMS stopped in the middle of submitting; offered again")
            return
        else:
            entry = await self.submit(claim)
            if entry is None:
                return
        await self.confirm(entry)

    async def _with_profiles(self, claim: Claim) -> Claim:
        """The claim with every queue's profile, asking the MQS routes for any the claim lacks."""
        missing = [q for q in claim.queue_names if q not in claim.mqprofiles]
        if not missing:
            return claim
        profiles = dict(claim.mqprofiles)
        for mqid in missing:
            profiles[mqid] = await self.wms.mq_profile(mqid)
        return dataclasses.replace(claim, mqprofiles=profiles)

    async def submit(self, claim: Claim) -> Entry | None:
        """Submit the claim's pilots and journal the cluster; None if it failed (and was reported)."""
        try:
            claim = await self._with_profiles(claim)
            spec = pilot_spec(claim, host_command_image=self.host_command_image, operator_env=self.operator_env)
        except (SpecError, ServiceRefused, KeyError, ValueError, TypeError) as exc:
            await self._fail(claim.uuid, f"cannot build the pilots' job: {exc}")
            return None
        entry = await asyncio.to_thread(self.journal.begin, claim.uuid, claim.n_workers)
        try:
            cluster_id = await self.scheduler.submit(spec, claim.n_workers)
        except Exception as exc:
            await asyncio.to_thread(self.journal.forget, claim.uuid)
            await self._fail(claim.uuid, f"{self.scheduler.name} submission failed: {exc}")
            return None
        LOGGER.info("taskforce %s: submitted %d pilot(s) as cluster %s", claim.uuid, claim.n_workers, cluster_id)
        return await asyncio.to_thread(self.journal.submitted, entry, cluster_id, self.scheduler.describe(spec))

    async def _fail(self, uuid: str, error: str) -> None:
        LOGGER.error("taskforce %s: %s", uuid, error)
        try:
            await self.wms.report_submit_failed(uuid, error)
        except ServiceRefused as exc:
            LOGGER.warning("taskforce %s: the WMS refused the failure report: %s", uuid, exc)

    async def confirm(self, entry: Entry) -> None:
        """Tell the WMS of the cluster; if it refuses, remove the cluster. Either way the entry is done."""
        uuid = entry.taskforce_uuid
        try:
            await self.wms.confirm_submit(uuid, submission_record(entry))
        except ServiceRefused as exc:
            await self._remove_orphan(entry, f"the WMS refused the submission ({exc.message})")
            return
        await asyncio.to_thread(self.journal.forget, uuid)
        LOGGER.info("taskforce %s: cluster %s confirmed to the WMS", uuid, entry.cluster_id)
