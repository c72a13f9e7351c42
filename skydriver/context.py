"""What every handler can reach: configuration, stores, scan operations, the OpenAPI document."""

import dataclasses
from typing import Any

from ewms_rest.validation import RequestValidator

from .config import Config
from .database import Database
from .scans import Scans


@dataclasses.dataclass(frozen=True)
class AppContext:
    config: Config
    db: Database
    scans: Scans
    validator: RequestValidator
    openapi: dict[str, Any]
    versions: dict[str, str]

    @property
    def role_claim(self) -> str:
        return self.config.auth_role_claim
