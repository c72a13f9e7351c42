"""MongoDB storage of scans: requests, manifests, results, events, queue credentials and checkpoints.

The only package in `skydriver` that imports `pymongo`. Changes that race (two replicas' starters,
a DELETE against the watchdog) are conditional updates on the state they expect, so exactly one
of the racers wins without locks.
"""

from pymongo.errors import PyMongoError as DatabaseError

from ewms_rest.search import QueryError

from .client import Database

__all__ = ["Database", "DatabaseError", "QueryError"]
