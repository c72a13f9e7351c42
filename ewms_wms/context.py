"""What every handler can reach: configuration, stores, loops, the OpenAPI document."""

import dataclasses
from collections.abc import Callable
from typing import Any

from .config import Config
from .database import Database
from .janitor import Janitor
from .model import BrokerSettings
from .provisioner import Provisioner
from .validation import RequestValidator


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
