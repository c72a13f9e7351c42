"""What every WMS handler adds to the shared REST handler: the clock and who sees which workflow."""

from typing import Any, ClassVar

import ewms_rest.handler

from ..auth import is_admin, sees_everything
from ..context import AppContext
from ..database import DatabaseError


class BaseHandler(ewms_rest.handler.BaseHandler):
    """A WMS route; `self.ctx` is the WMS's `AppContext`."""

    REALM: ClassVar[str] = "ewms-wms"
    UNAVAILABLE: ClassVar[tuple[type[BaseException], ...]] = (DatabaseError,)
    UNAVAILABLE_MESSAGE: ClassVar[str] = "the database does not answer; try again later"
    ctx: AppContext

    def now(self) -> float:
        return self.ctx.clock()

    def visible(self, doc: dict[str, Any] | None) -> bool:
        """Admins and TMSs see everything; a user sees what it owns."""
        return doc is not None and (sees_everything(self.roles) or doc.get("owner") == self.subject)

    def may_change(self, doc: dict[str, Any] | None) -> bool:
        """Only an admin or the owner may act on a workflow."""
        return doc is not None and (is_admin(self.roles) or doc.get("owner") == self.subject)

    def scope(self) -> dict[str, Any]:
        """The filter that limits a search to what the caller may see."""
        return {} if sees_everything(self.roles) else {"owner": self.subject}


class NotFoundHandler(BaseHandler, ewms_rest.handler.NotFoundHandler):
    """Every path no route matches: a JSON 404 (whatever the method)."""
