"""The fault suite's fixtures: the whole system of `tests/system.py`, on shared or private services.

- ``wms_factory`` (tests/integration/conftest.py) and ``skydriver_factory`` (tests/integration/skydriver/conftest.py):
  the services in this process;
- ``system``, ``system_factory``, ``tms_factory``, ``private_mongo`` (tests/system.py): the whole system, a TMS
  process, an ``nx-27017`` of the test's own;
- ``private_rabbitmq_factory`` (tests/conftest.py): a RabbitMQ node of the test's own.
"""

from tests.integration.conftest import wms_factory  # noqa: F401  (fixture)
from tests.integration.skydriver.conftest import skydriver_factory  # noqa: F401  (fixture)
from tests.system import private_mongo, system, system_factory, tms_factory  # noqa: F401  (fixtures)
