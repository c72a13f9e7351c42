"""The `taskforces` collection and its phase machine (see `ewms_wms.phases`).

Each move is a conditional update on the phase it starts from, so of two racing callers
exactly one wins and the other learns the phase it lost to. Every attempt, won or lost, goes
to the `phase_changes` log (a collection of its own: appending sub-documents to an array is
not reliable on every MongoDB wire server).

Maps with caller-chosen keys (HTCondor submit attributes like `My.Attr`, error texts) are
stored as JSON text: MongoDB field names must not contain dots.
"""

import dataclasses
import enum
import json
import uuid
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from ..phases import NEVER_SUBMITTED, TERMINAL, Phase, Transition
from .query import Page, find_page

Doc = dict[str, Any]
NO_ID = {"_id": False}
JSON_FIELDS = ("submit_dict", "compound_statuses", "top_task_errors")
_RELEASED_CLAIM = {"claimed_by": None, "claim_expires_ts": None}
_STOP_PASSES = 5
NULL = {"$eq": None}  # see workflows.NULL


class Result(enum.Enum):
    DONE = "done"  # the phase moved
    ALREADY = "already"  # a repeat of something already true: nothing to do
    NOT_FOUND = "not found"
    CONFLICT = "conflict"  # the taskforce is in a phase where this makes no sense


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a confirmation did, and the phase the taskforce is in."""

    result: Result
    phase: str | None = None


def encode(doc: Doc) -> Doc:
    """The stored form: caller-keyed maps as JSON text."""
    return {k: (json.dumps(v) if k in JSON_FIELDS and v is not None else v) for k, v in doc.items()}


def decode(doc: Doc) -> Doc:
    """The public form of a stored taskforce."""
    return {k: (json.loads(v) if k in JSON_FIELDS and isinstance(v, str) else v) for k, v in doc.items()}


class Taskforces:
    def __init__(self, collection: AsyncCollection[Doc], log: AsyncCollection[Doc]) -> None:
        self.collection = collection
        self.log = log

    # -- reading -------------------------------------------------------------------------------

    async def insert_many(self, docs: list[Doc]) -> None:
        await self.collection.insert_many([encode(d) for d in docs])

    async def get(self, taskforce_uuid: str) -> Doc | None:
        doc = await self.collection.find_one({"taskforce_uuid": taskforce_uuid}, NO_ID)
        return None if doc is None else decode(doc)

    async def find(self, query: Doc, scope: Doc, after: str | None, limit: int) -> Page:
        page = await find_page(self.collection, query, scope, after, limit)
        return Page([decode(d) for d in page.docs], page.next_after)

    async def for_workflow(self, workflow_id: str) -> list[Doc]:
        docs = await self.collection.find({"workflow_id": workflow_id}, NO_ID).sort("_id", 1).to_list()
        return [decode(d) for d in docs]

    async def any_for_task(self, task_id: str) -> Doc | None:
        doc = await self.collection.find_one({"task_id": task_id}, NO_ID)
        return None if doc is None else decode(doc)

    async def count_unfinished(self, workflow_id: str) -> int:
        """Taskforces of the workflow that still have (or may get) jobs.

        Counted here from the workflow's phases (at most a few hundred; see the workflow limits):
        the dev MongoDB wire server answers `count_documents` and `$nin` by reading every taskforce.
        """
        cursor = self.collection.find({"workflow_id": workflow_id}, {"phase": True, "_id": False})
        return sum(1 for doc in await cursor.to_list() if doc.get("phase") not in TERMINAL)

    async def phase_log(self, taskforce_uuid: str) -> list[Doc]:
        cursor = self.log.find({"taskforce_uuid": taskforce_uuid}, {"_id": False, "taskforce_uuid": False})
        return await cursor.sort("_id", 1).to_list()

    async def _log(self, taskforce_uuid: str, target: str, ok: bool, entity: str, context: str, now: float) -> None:
        await self.log.insert_one(
            {
                "taskforce_uuid": taskforce_uuid,
                "target_phase": target,
                "timestamp": now,
                "was_successful": ok,
                "source_event_time": None,
                "source_entity": entity,
                "context": context,
            }
        )

    async def _move(
        self, uuid_: str, source: str, target: Phase, extra: Doc, entity: str, context: str, now: float
    ) -> bool:
        """One conditional move `source` -> `target`, logged when it happens."""
        result = await self.collection.update_one(
            {"taskforce_uuid": uuid_, "phase": source}, {"$set": {"phase": str(target), **encode(extra)}}
        )
        if result.modified_count:
            await self._log(uuid_, str(target), True, entity, context, now)
        return bool(result.modified_count)

    # -- the WMS's own moves -------------------------------------------------------------------

    async def activate(self, workflow_id: str, now: float) -> int:
        """pre-mq-activation -> pending-starter for the workflow (its queues now exist)."""
        moved = 0
        cursor = self.collection.find({"workflow_id": workflow_id, "phase": str(Phase.PRE_MQ_ACTIVATION)}, NO_ID)
        for doc in await cursor.to_list():
            uuid_ = doc["taskforce_uuid"]
            moved += await self._move(
                uuid_, str(Phase.PRE_MQ_ACTIVATION), Phase.PENDING_STARTER, {}, "WMS", "queues activated", now
            )
        return moved

    async def stop_workflow(self, workflow_id: str, reason: str, now: float) -> int:
        """Deactivation: never-submitted taskforces complete at once, submitted ones go to pending-stopper.

        Repeats until a pass finds nothing to move, so a confirmation racing the stop is caught
        in the phase it reached.
        """
        moved = 0
        movable = [str(p) for p in (*NEVER_SUBMITTED, Phase.CONDOR_SUBMIT)]
        for _ in range(_STOP_PASSES):
            docs = await self.collection.find({"workflow_id": workflow_id, "phase": {"$in": movable}}, NO_ID).to_list()
            if not docs:
                break
            for doc in docs:
                moved += await self._stop_one(doc, reason, now)
        return moved

    async def _stop_one(self, doc: Doc, reason: str, now: float) -> bool:
        phase = doc["phase"]
        if phase == Phase.CONDOR_SUBMIT:
            return await self._move(doc["taskforce_uuid"], phase, Phase.PENDING_STOPPER, {}, "WMS", reason, now)
        extra = {"condor_complete_ts": now, **_RELEASED_CLAIM}
        context = f"{reason}: no jobs were submitted, nothing to remove"
        return await self._move(doc["taskforce_uuid"], phase, Phase.CONDOR_COMPLETE, extra, "WMS", context, now)

    # -- TMS: starter --------------------------------------------------------------------------

    async def claim(self, location: str, claimant: str | None, now: float, lease: float) -> Doc | None:
        """Lease the next pending-starter taskforce at `location` (highest priority, then oldest).

        Atomic: two claimants never hold one taskforce at once. A claimant asking again gets
        back what it holds; without a claimant name a claim is held until the lease expires.
        """
        holder = claimant or f"anonymous-{uuid.uuid4().hex}"
        doc = await self.collection.find_one_and_update(
            {
                "phase": str(Phase.PENDING_STARTER),
                "cluster_location": location,
                "$or": [{"claimed_by": NULL}, {"claim_expires_ts": {"$lt": now}}, {"claimed_by": holder}],
            },
            {"$set": {"claimed_by": holder, "claim_expires_ts": now + lease}},
            sort=[("priority", DESCENDING), ("timestamp", ASCENDING)],
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else decode(doc)

    async def confirm_submit(self, taskforce_uuid: str, fields: Doc, entity: str, now: float) -> Outcome:
        """pending-starter -> condor-submit with the cluster's facts. A repeat with the same cluster is fine;
        anything else (stopped meanwhile, or another cluster confirmed first) is a conflict."""
        extra = {**fields, **_RELEASED_CLAIM}
        context = f"submitted cluster {fields['cluster_id']}"
        if await self._move(
            taskforce_uuid, str(Phase.PENDING_STARTER), Phase.CONDOR_SUBMIT, extra, entity, context, now
        ):
            return Outcome(Result.DONE, str(Phase.CONDOR_SUBMIT))
        doc = await self.get(taskforce_uuid)
        if doc is None:
            return Outcome(Result.NOT_FOUND)
        await self._log(taskforce_uuid, str(Phase.CONDOR_SUBMIT), False, entity, f"refused in {doc['phase']}", now)
        if doc["phase"] not in NEVER_SUBMITTED and doc["cluster_id"] == fields["cluster_id"]:
            return Outcome(Result.ALREADY, doc["phase"])
        return Outcome(Result.CONFLICT, doc["phase"])

    async def submit_failed(
        self, taskforce_uuid: str, error: str, max_attempts: int, entity: str, now: float
    ) -> Outcome:
        """Count a failed submission; past `max_attempts` the taskforce is `failed`, else offered again."""
        doc = await self.collection.find_one_and_update(
            {"taskforce_uuid": taskforce_uuid, "phase": str(Phase.PENDING_STARTER)},
            {"$inc": {"submit_failures": 1}, "$set": {"last_submit_error": error, **_RELEASED_CLAIM}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return await self._late_report(taskforce_uuid, str(Phase.FAILED), error, entity, now)
        await self._log(taskforce_uuid, str(Phase.CONDOR_SUBMIT), False, entity, f"submission failed: {error}", now)
        if doc["submit_failures"] < max_attempts:
            return Outcome(Result.DONE, str(Phase.PENDING_STARTER))
        reason = f"submission failed {doc['submit_failures']} times; last error: {error}"
        await self._move(
            taskforce_uuid, str(Phase.PENDING_STARTER), Phase.FAILED, {"failed_reason": reason}, entity, reason, now
        )
        return Outcome(Result.DONE, str(Phase.FAILED))

    async def _late_report(self, taskforce_uuid: str, target: str, error: str, entity: str, now: float) -> Outcome:
        """A failure report for a taskforce that moved on: harmless once it is terminal, else a conflict.

        The TMS's error text is kept in the phase log all the same: it is what an operator reads.
        """
        doc = await self.get(taskforce_uuid)
        if doc is None:
            return Outcome(Result.NOT_FOUND)
        note = f"failure report ignored in {doc['phase']}: {error}"
        await self._log(taskforce_uuid, target, False, entity, note, now)
        return Outcome(Result.ALREADY if doc["phase"] in TERMINAL else Result.CONFLICT, doc["phase"])

    # -- TMS: stopper and watcher --------------------------------------------------------------

    async def next_pending_stopper(self, location: str) -> Doc | None:
        doc = await self.collection.find_one(
            {"phase": str(Phase.PENDING_STOPPER), "cluster_location": location},
            NO_ID,
            sort=[("priority", DESCENDING), ("timestamp", ASCENDING)],
        )
        return None if doc is None else decode(doc)

    async def confirm(
        self, taskforce_uuid: str, transition: Transition, extra: Doc, entity: str, now: float
    ) -> Outcome:
        """Apply a TMS confirmation (`phases.RM`, `phases.COMPLETE`) from whichever source phase it is in."""
        doc = await self.get(taskforce_uuid)
        while doc is not None and doc["phase"] in transition.sources:
            if await self._move(taskforce_uuid, doc["phase"], transition.target, extra, entity, transition.name, now):
                return Outcome(Result.DONE, str(transition.target))
            doc = await self.get(taskforce_uuid)  # it moved meanwhile: judge again
        if doc is None:
            return Outcome(Result.NOT_FOUND)
        if doc["phase"] in transition.already_done:
            return Outcome(Result.ALREADY, doc["phase"])
        await self._log(taskforce_uuid, str(transition.target), False, entity, f"refused in {doc['phase']}", now)
        return Outcome(Result.CONFLICT, doc["phase"])

    async def rm_failed(self, taskforce_uuid: str, error: str, entity: str, now: float) -> Outcome:
        """Record a failed removal; the taskforce stays pending-stopper and is offered again."""
        result = await self.collection.update_one(
            {"taskforce_uuid": taskforce_uuid, "phase": str(Phase.PENDING_STOPPER)},
            {"$set": {"last_condor_rm_error": error}},
        )
        if not result.matched_count:
            return await self._late_report(taskforce_uuid, str(Phase.CONDOR_RM), error, entity, now)
        await self._log(taskforce_uuid, str(Phase.CONDOR_RM), False, entity, f"removal failed: {error}", now)
        return Outcome(Result.DONE, str(Phase.PENDING_STOPPER))

    async def record_statuses(self, taskforce_uuid: str, changes: Doc, now: float) -> bool:
        """Store a TMS's latest compound statuses / top errors; False if the taskforce is unknown."""
        result = await self.collection.update_one(
            {"taskforce_uuid": taskforce_uuid}, {"$set": {**encode(changes), "statuses_ts": now}}
        )
        return bool(result.matched_count)
