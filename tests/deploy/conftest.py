"""The Helm chart rendered with Helm itself (helm-python-sdk: Helm v4 as a library, no cluster, no network).

`rendered` runs every test that takes it once per value set in `deploy_support.VALUE_SETS`; `render` renders
any other values.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
from deploy_support import CHART_DIR, NAMESPACE, RELEASE, VALUE_SETS, Render, Rendered


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """`render(values)`: the chart as `helm template sd -n skyscans` would print it."""

    def _render(values: dict[str, Any], name: str = "custom") -> Rendered:
        files = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)
        return Rendered(name, values, files)

    return _render


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, render: Render) -> Rendered:
    name: str = request.param
    return render(VALUE_SETS[name], name)
