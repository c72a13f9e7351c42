"""The `Manifests` collection: one document per scan, its state and everything a client reads about it.

Besides the public fields (`GET /scan/{id}/manifest`), a manifest carries internal ones that never
leave this module: `starter` (which replica holds the scan while starting it, and the retry
schedule when the WMS does not answer), `checkpoint_seq` (the scanner's checkpoint counter) and
`cleanup_pending` (the scan is over but its workflow or scanner may still be there) and
`pilots_gone_since` (when the watchdog first saw the scan's workflow without pilots to come).
"""

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from ewms_rest.search import QueryError, check_filter, project

from ..states import RUNNING, ScanState

Doc = dict[str, Any]
NO_ID = {"_id": False}
# null tests spelled `{"$eq": None}`: the same on MongoDB, and reliable on the test wire server
NULL = {"$eq": None}
INTERNAL = ("_id", "starter", "checkpoint_seq", "cleanup_pending", "pilots_gone_since")
# `$set` booleans may come back as 1/0 from some MongoDB wire servers
BOOLEANS = ("is_deleted", "complete")
BACKLOG_ORDER = [("priority", DESCENDING), ("timestamp", ASCENDING)]
# what a claim, a release and a retry schedule change: a claim matches them as it read them
CLAIM_FIELDS = ("claimed_by", "claim_expires", "next_attempt")
NEW_STARTER = {"claimed_by": None, "claim_expires": None, "attempts": 0, "next_attempt": None, "last_error": None}


def public(doc: Doc) -> Doc:
    """The manifest as clients see it: internal fields out, booleans as booleans."""
    out = {k: v for k, v in doc.items() if k not in INTERNAL}
    for key in BOOLEANS:
        if key in out:
            out[key] = bool(out[key])
    return out


def _free(starter: Doc, now: float) -> bool:
    """Whether the starter may claim a backlog scan with this `starter` record now."""
    claim_expires, next_attempt = starter.get("claim_expires"), starter.get("next_attempt")
    unheld = starter.get("claimed_by") is None or (claim_expires is not None and claim_expires < now)
    return unheld and (next_attempt is None or next_attempt <= now)


def _equals(value: Any) -> Any:
    return NULL if value is None else value


def _scope(include_deleted: bool) -> Doc:
    return {} if include_deleted else {"is_deleted": False}


class Manifests:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def insert(self, doc: Doc) -> None:
        await self.collection.insert_one({**doc, "starter": dict(NEW_STARTER), "checkpoint_seq": 0})

    async def get(self, scan_id: str, include_deleted: bool = True) -> Doc | None:
        """The public manifest, or None (also for a deleted scan unless `include_deleted`)."""
        doc = await self.collection.find_one({"scan_id": scan_id, **_scope(include_deleted)}, NO_ID)
        return None if doc is None else public(doc)

    async def get_internal(self, scan_id: str) -> Doc | None:
        """The whole document, internal fields included: for the loops."""
        return await self.collection.find_one({"scan_id": scan_id}, NO_ID)

    async def update(self, scan_id: str, changes: Doc, now: float, where: Doc | None = None) -> Doc | None:
        """`$set` the changes if the manifest matches `where`; the public manifest after, or None if it did not."""
        doc = await self.collection.find_one_and_update(
            {"scan_id": scan_id, **(where or {})},
            {"$set": {**changes, "last_updated": now}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else public(doc)

    async def next_checkpoint_seq(self, scan_id: str) -> int | None:
        """A fresh sequence number for the scan's next checkpoint (atomic), or None for an unknown scan."""
        doc = await self.collection.find_one_and_update(
            {"scan_id": scan_id},
            {"$inc": {"checkpoint_seq": 1}},
            projection={"checkpoint_seq": True, "_id": False},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else int(doc["checkpoint_seq"])

    # -- the starter's backlog -----------------------------------------------------------------

    async def claim_next(self, holder: str, now: float, lease: float) -> Doc | None:
        """Take the next backlog scan (highest priority, then oldest) for `lease` seconds; None if none is due.

        The backlog is listed in order with each scan's `starter` record; the first one free (not
        held, or its lease expired; not waiting for a retry) is claimed with one atomic
        `find_one_and_update` that matches the record as it was read, so if another replica claimed,
        released or rescheduled it meanwhile, the claim misses and the next scan is tried. Two
        replicas never hold the same scan; a claim whose holder died expires with its lease.
        (Filtering with `$or` in the database instead makes the dev MongoDB wire server read the
        whole collection per call, stalling every other request.)
        """
        for candidate in await self._backlog({"scan_id": True, "starter": True, "_id": False}):
            starter = candidate.get("starter") or {}
            if not _free(starter, now):
                continue
            as_read = {f"starter.{key}": _equals(starter.get(key)) for key in CLAIM_FIELDS}
            doc = await self.collection.find_one_and_update(
                {"scan_id": candidate["scan_id"], "scan_state": str(ScanState.PENDING__PRESTARTUP), **as_read},
                {"$set": {"starter.claimed_by": holder, "starter.claim_expires": now + lease}},
                projection=NO_ID,
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return doc
        return None

    async def release(self, scan_id: str, holder: str, changes: Doc, now: float) -> Doc | None:
        """Record what a claim achieved and let go of it (only while `holder` still holds it)."""
        released = {"starter.claimed_by": None, "starter.claim_expires": None, **changes}
        return await self.update(scan_id, released, now, where={"starter.claimed_by": holder})

    async def backlog(self) -> list[Doc]:
        """The scans waiting for a scanner, in the order the starter takes them."""
        return await self._backlog({"scan_id": True, "priority": True, "timestamp": True, "_id": False})

    async def _backlog(self, projection: Doc) -> list[Doc]:
        waiting = {"scan_state": str(ScanState.PENDING__PRESTARTUP), "is_deleted": False}
        cursor = self.collection.find(waiting, projection)
        return await cursor.sort(BACKLOG_ORDER).to_list()

    async def count_running(self) -> int:
        """Scans with a scanner running (or starting): what SKYDRIVER_MAX_ACTIVE_SCANS limits."""
        return len(await self._in_running_states({"scan_id": True, "_id": False}))

    # -- the watchdog's lists ------------------------------------------------------------------

    async def running(self) -> list[Doc]:
        """Scans whose scanner should be alive and reporting."""
        return await self._in_running_states(NO_ID)

    async def _in_running_states(self, projection: Doc) -> list[Doc]:
        """One equality query per running state, each served by the `scan_state` index.

        Not `$in` and not `count_documents`: the dev MongoDB wire server reads the whole collection
        for those (a second with 10,000 scans), and the loops ask this every few seconds.
        """
        docs: list[Doc] = []
        for state in sorted(RUNNING):
            cursor = self.collection.find({"scan_state": str(state), "is_deleted": False}, projection)
            docs += await cursor.to_list()
        return docs

    async def cleanup_pending(self) -> list[Doc]:
        """Scans that are over but may still have a live workflow or scanner."""
        return await self.collection.find({"cleanup_pending": True}, NO_ID).to_list()

    async def cleaned_up(self, scan_id: str) -> None:
        await self.collection.update_one({"scan_id": scan_id}, {"$set": {"cleanup_pending": False}})

    # -- users' searches -----------------------------------------------------------------------

    async def find(self, query: Doc, include_deleted: bool, projection: Iterable[str] | None) -> list[Doc]:
        """Manifests matching a vetted user filter (see `ewms_rest.search.check_filter`), oldest first, projected."""
        check_filter(query, "filter")
        clauses = [c for c in (query, _scope(include_deleted)) if c]
        mongo_filter = {"$and": clauses} if clauses else {}
        try:
            docs = await self.collection.find(mongo_filter, NO_ID).sort("timestamp", ASCENDING).to_list()
        except OperationFailure as exc:
            raise QueryError("filter", f"the database refused it: {str(exc.details or exc)[:300]}") from None
        return [project(public(d), projection) for d in docs]
