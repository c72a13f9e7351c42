"""MongoDB storage of workflows, task directives, taskforces and queue profiles.

The only package in `ewms_wms` that imports `pymongo`. Every write that changes a phase is a
conditional update on the phase it expects, so concurrent requests (two TMSs, an abort racing
a confirmation) settle without locks: exactly one of them matches.
"""

from pymongo.errors import PyMongoError as DatabaseError

from ewms_rest.search import QueryError

from .client import Database
from .taskforces import Outcome, Result

__all__ = ["Database", "DatabaseError", "Outcome", "QueryError", "Result"]
