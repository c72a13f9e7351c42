"""What the deploy tests share: where things are, the value sets operators use, and a rendered chart.

The value sets use only example hosts and made-up credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "skydriver-ewms"
RELEASE = "sd"
NAMESPACE = "skyscans"

Manifest = dict[str, Any]

EXTERNAL: dict[str, Any] = {
    "externalMongodb": {"url": "mongodb://skydriver:m0ng0-pw@mongo.db.example.org:27017/?authSource=admin"},
    "externalRabbitmq": {
        "url": "amqps://ewms:rabbit-pw@rabbitmq.example.org:5671/ewms",
        "managementUrl": "https://rabbitmq.example.org:15671",
        "publicAddress": "rabbitmq.example.org:5671/ewms",
    },
    "skydriver": {"defaultClusters": {"sub-2": 100}, "config": {"SKYDRIVER_MAX_ACTIVE_SCANS": 20}},
    "wms": {"config": {"WMS_PROVISION_POLL_SECONDS": 5}},
}

TMS_AND_INGRESS: dict[str, Any] = {
    **EXTERNAL,
    "tms": {
        "enabled": True,
        "clusterLocation": "sub-2",
        "pilotEnv": {"EWMS_PILOT_PREFETCH": 4, "EWMS_PILOT_KEEP_ALL_TASK_FILES": False},
        "condor": {"config": "CONDOR_HOST = cm.example.org\n", "existingTokenSecret": "condor-idtokens"},
        "config": {"TMS_WATCHER_INTERVAL": "30"},
    },
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "skydriver": {"host": "skydriver.example.org"},
        "wms": {"host": "ewms.example.org"},
        "tls": [{"secretName": "skydriver-ewms-tls", "hosts": ["skydriver.example.org", "ewms.example.org"]}],
    },
}

# production auth: an OpenID provider for both services, tokens given, the TMS on OAuth client credentials
OPENID: dict[str, Any] = {
    **TMS_AND_INGRESS,
    "skydriver": {
        "auth": {"openidUrl": "https://keycloak.example.org/auth/realms/IceCube", "audience": "skydriver"},
        "scannerToken": "scanner-token",
        "wmsToken": "skydriver-at-wms-token",
    },
    "wms": {"auth": {"openidUrl": "https://keycloak.example.org/auth/realms/IceCube", "audience": "ewms"}},
    "tms": {
        **TMS_AND_INGRESS["tms"],
        "oauth": {
            "tokenUrl": "https://keycloak.example.org/auth/realms/IceCube/protocol/openid-connect/token",
            "clientId": "ewms-tms-sub-2",
            "clientSecret": "oauth-secret",
        },
    },
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-broker-db": EXTERNAL,
    "tms-and-ingress": TMS_AND_INGRESS,
    "openid": OPENID,
}


class Rendered:
    """One rendering of the chart: its manifests, NOTES.txt, and lookups tests share."""

    def __init__(self, name: str, values: dict[str, Any], files: dict[str, str]) -> None:
        self.name = name
        self.values = values
        self.notes = next((text for path, text in files.items() if path.endswith("NOTES.txt")), "")
        self.manifests: list[Manifest] = [
            doc
            for path, text in sorted(files.items())
            if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name_suffix: str) -> Manifest:
        (found,) = [m for m in self.of_kind(kind) if m["metadata"]["name"].endswith(name_suffix)]
        return found

    def deployment(self, component: str) -> Manifest:
        return self.one("Deployment", f"-{component}")


Render = Callable[..., Rendered]
"""The `render` fixture: `render(values)` -> `Rendered`."""
