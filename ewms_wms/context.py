"""What every handler can reach: configuration, stores, loops, the OpenAPI document."""

import dataclasses
from collections.abc import Callable
from typing import Any

from ewms_rest.validation import RequestValidator

from .config import Config
from .database import Database
from .janitor import Janitor
from .model import BrokerSettings
from .provisioner import Provisioner


@dataclasses.dataclass(frozen=True)
class AppContext:
    config: Config
    db: Database
    validator: RequestValidator
    openapi: dict[str, Any]
    provisioner: Provisioner
    janitor: Janitor
    broker: BrokerSettings
    clock: Callable[[], float]

    @property
    def role_claim(self) -> str:
        return self.config.auth_role_claim
