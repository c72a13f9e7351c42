"""The Kubernetes launcher: its Job and Secret manifests, validated against the Kubernetes schemas
(`kubernetes-validate --strict`), and its calls through `K8sJobsAPI`.

No API server can run here (DESIGN §5), so the launcher's calls go to `InMemoryJobsAPI`, behind the
launcher's own `K8sJobsAPI` protocol: it keeps objects by namespace and name, answers 409 for a
second create, validates every object it is given against the schemas (as an API server with
strict field validation would), and deletes a Job's owned Secrets with it (Kubernetes' garbage
collector). `test_real_client_*` drive the real `KubernetesJobsAPI` against a small HTTP stand-in
for the API server's routes, so its requests and error handling are exercised too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from skydriver.config import Config
from skydriver.launchers import SECRET_ENV, LauncherError, ScannerInstance, make_launcher
from skydriver.launchers.k8s import (
    APP,
    APP_LABEL,
    SCAN_LABEL,
    K8sConflict,
    K8sLauncher,
    KubernetesJobsAPI,
    Manifest,
    build_job_manifest,
    build_secret_manifest,
    job_running,
    resource_name,
)
from skydriver.launchers.local import LocalLauncher

K8S_VERSION = kubernetes_validate.latest_version()
TOKEN = "eyJ-the-scanner-token-that-must-not-leak"
MQ_PROFILES = json.dumps({"to-clients": {"mqid": "q1", "auth_token": "broker-password-secret"}})
SCAN_ID = uuid.uuid4().hex
ENV = {
    "SKYSCAN_SCAN_ID": SCAN_ID,
    "SKYSCAN_SKYDRIVER_URL": "http://skydriver.skydriver.svc:8000",
    "SKYSCAN_SKYDRIVER_TOKEN": TOKEN,
    "SKYSCAN_MQ_PROFILES": MQ_PROFILES,
    "SKYSCAN_PROGRESS_INTERVAL": "5",
}
NS = "skydriver"
IMAGE = "ghcr.io/skydriver-ewms/scanner"


def instance(attempt: int = 0, **overrides: Any) -> ScannerInstance:
    settings: dict[str, Any] = {
        "scan_id": SCAN_ID,
        "env": ENV,
        "docker_tag": "1.2.3",
        "memory_bytes": 2 * 1024**3,
        "cpus": 1.5,
        "attempt": attempt,
    }
    return ScannerInstance(**{**settings, **overrides})


def job(inst: ScannerInstance | None = None) -> Manifest:
    return build_job_manifest(inst or instance(), namespace=NS, image=IMAGE, ttl_seconds=600)


def validate(manifest: Manifest) -> None:
    """What `kubernetes-validate --strict` says: raises on a wrong type or an unknown field."""
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


class InMemoryJobsAPI:
    """`K8sJobsAPI` kept in dicts (tests only); see the module docstring."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], Manifest] = {}
        self.secrets: dict[tuple[str, str], Manifest] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse_secrets = False
        self.closed = False

    async def create_job(self, namespace: str, manifest: Manifest) -> Manifest:
        validate(manifest)
        name = manifest["metadata"]["name"]
        self.calls.append(("create_job", name))
        if (namespace, name) in self.jobs:
            raise K8sConflict(f"Job {name} exists")
        created: Manifest = json.loads(json.dumps(manifest))
        created["metadata"]["uid"] = str(uuid.uuid4())
        created["status"] = {}
        self.jobs[namespace, name] = created
        return created

    async def read_job(self, namespace: str, name: str) -> Manifest | None:
        self.calls.append(("read_job", name))
        return self.jobs.get((namespace, name))

    async def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_job", name))
        gone = self.jobs.pop((namespace, name), None)
        if gone is not None:  # the garbage collector: owned Secrets go with their Job
            uid = gone["metadata"]["uid"]
            for key, secret in list(self.secrets.items()):
                if any(ref["uid"] == uid for ref in secret["metadata"].get("ownerReferences", [])):
                    del self.secrets[key]

    async def create_secret(self, namespace: str, manifest: Manifest) -> None:
        validate(manifest)
        name = manifest["metadata"]["name"]
        self.calls.append(("create_secret", name))
        if self.refuse_secrets:
            raise LauncherError("Kubernetes refused to create a Secret: 403 Forbidden")
        if (namespace, name) in self.secrets:
            raise K8sConflict(f"Secret {name} exists")
        self.secrets[namespace, name] = manifest

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_secret", name))
        self.secrets.pop((namespace, name), None)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def api() -> InMemoryJobsAPI:
    return InMemoryJobsAPI()


@pytest.fixture
def launcher(api: InMemoryJobsAPI) -> K8sLauncher:
    return K8sLauncher(api, namespace=NS, image=IMAGE, ttl_seconds=600)


# -- manifests ------------------------------------------------------------------------------------------


def test_job_and_secret_manifests_pass_strict_schema_validation() -> None:
    validate(job())
    validate(build_secret_manifest(instance(), namespace=NS, job_uid=str(uuid.uuid4())))


def test_job_manifest_runs_the_scanner_image_once_as_non_root() -> None:
    manifest = job()
    assert manifest["metadata"]["name"] == f"skyscan-{SCAN_ID}"
    assert manifest["metadata"]["labels"][APP_LABEL] == APP
    assert manifest["metadata"]["labels"][SCAN_LABEL] == SCAN_ID
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"][SCAN_LABEL] == SCAN_ID
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"] == f"{IMAGE}:1.2.3"
    assert container["command"] == ["python", "-m", "skydriver.scanner"]
    assert container["resources"]["requests"] == {"cpu": "1500m", "memory": str(2 * 1024**3)}
    assert container["resources"]["limits"] == {"memory": str(2 * 1024**3)}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_job_env_carries_no_secret_in_clear() -> None:
    manifest = job()
    text = json.dumps(manifest)
    assert TOKEN not in text
    assert "broker-password-secret" not in text
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in container["env"]}
    assert names == set(ENV) - SECRET_ENV
    assert all("value" in e for e in container["env"])
    assert container["envFrom"] == [{"secretRef": {"name": f"skyscan-{SCAN_ID}"}}]


def test_secret_holds_exactly_the_secrets_and_is_owned_by_the_job() -> None:
    uid = str(uuid.uuid4())
    secret = build_secret_manifest(instance(), namespace=NS, job_uid=uid)
    assert secret["stringData"] == {k: ENV[k] for k in SECRET_ENV}
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": f"skyscan-{SCAN_ID}", "uid": uid}
    ]


def test_each_restart_attempt_has_its_own_name() -> None:
    assert resource_name(instance(attempt=2)) == f"skyscan-{SCAN_ID}-r2"


@pytest.mark.parametrize("scan_id", ["has/slash", "UPPER_and_under_score", "x" * 60, ""])
def test_scan_ids_that_cannot_name_a_job_are_refused(scan_id: str) -> None:
    with pytest.raises(LauncherError, match="cannot name a Kubernetes Job"):
        resource_name(instance(scan_id=scan_id))


@pytest.mark.parametrize(
    ("status", "metadata", "running"),
    [
        ({}, {}, True),
        ({"active": 1}, {}, True),
        ({"succeeded": 1}, {}, False),
        ({"failed": 1}, {}, False),
        ({"conditions": [{"type": "Failed", "status": "True"}]}, {}, False),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, {}, False),
        ({"conditions": [{"type": "Suspended", "status": "False"}], "active": 1}, {}, True),
        ({"active": 1}, {"deletionTimestamp": "2026-11-27T10:00:00Z"}, False),
    ],
)
def test_job_running_reads_the_job_status(status: dict[str, Any], metadata: dict[str, Any], running: bool) -> None:
    assert job_running({"metadata": metadata, "status": status}) is running


# -- the launcher through the API ---------------------------------------------------------------------


async def test_start_creates_the_job_then_its_owned_secret(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    handle = await launcher.start(instance())
    assert handle == f"skyscan-{SCAN_ID}"
    assert [c[0] for c in api.calls] == ["create_job", "create_secret"]
    secret = api.secrets[NS, handle]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == api.jobs[NS, handle]["metadata"]["uid"]
    assert await launcher.alive(handle)


async def test_a_repeated_start_finds_the_first_job(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    first = await launcher.start(instance())
    uid = api.jobs[NS, first]["metadata"]["uid"]
    assert await launcher.start(instance()) == first
    assert len(api.jobs) == 1 and len(api.secrets) == 1
    assert api.jobs[NS, first]["metadata"]["uid"] == uid


async def test_a_restart_attempt_is_a_new_job(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    first = await launcher.start(instance())
    await launcher.stop(first)
    second = await launcher.start(instance(attempt=1))
    assert second != first
    assert await launcher.alive(second)
    assert not await launcher.alive(first)


async def test_alive_follows_the_job_status(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    handle = await launcher.start(instance())
    api.jobs[NS, handle]["status"] = {"active": 1}
    assert await launcher.alive(handle)
    api.jobs[NS, handle]["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}
    assert not await launcher.alive(handle)
    assert not await launcher.alive("skyscan-never-started")


async def test_stop_deletes_job_and_secret_and_is_idempotent(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    handle = await launcher.start(instance())
    await launcher.stop(handle)
    assert not api.jobs and not api.secrets
    await launcher.stop(handle)
    assert not await launcher.alive(handle)


async def test_a_refused_secret_takes_its_job_back(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    api.refuse_secrets = True
    with pytest.raises(LauncherError, match="403"):
        await launcher.start(instance())
    assert not api.jobs  # a Job whose Secret never comes would wait forever


async def test_aclose_closes_the_api(api: InMemoryJobsAPI, launcher: K8sLauncher) -> None:
    await launcher.aclose()
    assert api.closed


def test_make_launcher_picks_the_configured_backend(tmp_path: Path) -> None:
    env = {
        "SKYDRIVER_MONGODB_URL": "mongodb://127.0.0.1:27017",
        "SKYDRIVER_WMS_URL": "http://127.0.0.1:8080",
        "SKYDRIVER_AUTH_SECRET": "s" * 32,
        "SKYDRIVER_WMS_TOKEN": "t",
        "SKYDRIVER_LOCAL_STATE_DIR": str(tmp_path),
    }
    local = make_launcher(Config.from_env(env))
    assert isinstance(local, LocalLauncher) and local.state_dir == tmp_path
    k8s = make_launcher(Config.from_env({**env, "SKYDRIVER_LAUNCHER": "k8s", "SKYDRIVER_K8S_NAMESPACE": "sky"}))
    assert isinstance(k8s, K8sLauncher) and k8s.namespace == "sky" and isinstance(k8s.api, KubernetesJobsAPI)


# -- the real client against a stand-in for the API server's routes ------------------------------------


class _APIServer(tornado.web.RequestHandler):
    """Jobs and Secrets by name, as the API server answers them (201, 200, 404, 409; 403 on demand)."""

    def initialize(self, store: dict[str, Any]) -> None:
        self.store = store

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def _status(self, code: int, reason: str) -> None:
        self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})

    def post(self, kind: str, name: str | None = None) -> None:
        body = json.loads(self.request.body)
        self.store["requests"].append(("POST", kind, body))
        if kind in self.store["forbidden"]:
            return self._status(403, "Forbidden")
        key = (kind, body["metadata"]["name"])
        if key in self.store["objects"]:
            return self._status(409, "AlreadyExists")
        body["metadata"]["uid"] = str(uuid.uuid4())
        self.store["objects"][key] = body
        self._answer(201, body)

    def get(self, kind: str, name: str) -> None:
        found = self.store["objects"].get((kind, name))
        self._answer(200, found) if found else self._status(404, "NotFound")

    def delete(self, kind: str, name: str) -> None:
        self.store["requests"].append(("DELETE", kind, dict(self.request.query_arguments)))
        gone = self.store["objects"].pop((kind, name), None)
        self._answer(200, {"kind": "Status", "status": "Success"}) if gone else self._status(404, "NotFound")


@pytest.fixture
async def real_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[KubernetesJobsAPI, Any]]:
    """`KubernetesJobsAPI` configured from a kube config file, as outside a cluster."""
    store: dict[str, Any] = {"objects": {}, "requests": [], "forbidden": set()}
    routes = [(r"/apis/batch/v1/namespaces/[^/]+/(jobs)(?:/([^/]+))?", _APIServer, {"store": store}),
              (r"/api/v1/namespaces/[^/]+/(secrets)(?:/([^/]+))?", _APIServer, {"store": store})]  # fmt: skip
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application(routes))
    server.add_sockets(sockets)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{sockets[0].getsockname()[1]}"}}],
        "users": [{"name": "u", "user": {"token": "kube-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": NS}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    # the client reads $KUBECONFIG once, at import: point its default there, as the variable would
    monkeypatch.setattr("kubernetes.aio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api = KubernetesJobsAPI()
    yield api, store
    await api.aclose()
    server.stop()


async def test_real_client_starts_checks_and_stops_a_scanner(real_api: tuple[KubernetesJobsAPI, Any]) -> None:
    api, store = real_api
    launcher = K8sLauncher(api, namespace=NS, image=IMAGE, ttl_seconds=600)
    handle = await launcher.start(instance())
    sent_job = store["requests"][0][2]
    assert sent_job["spec"]["backoffLimit"] == 0  # camelCase on the wire, as the API server wants it
    assert sent_job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": handle}}]
    assert TOKEN not in json.dumps(sent_job)
    sent_secret = store["requests"][1][2]
    assert sent_secret["stringData"]["SKYSCAN_SKYDRIVER_TOKEN"] == TOKEN
    assert sent_secret["metadata"]["ownerReferences"][0]["uid"] == store["objects"]["jobs", handle]["metadata"]["uid"]
    assert await launcher.alive(handle)
    assert await launcher.start(instance()) == handle  # 409s: the first Job and Secret are kept
    await launcher.stop(handle)
    assert not store["objects"]
    assert ("DELETE", "jobs", {"propagationPolicy": [b"Background"]}) in store["requests"]
    await launcher.stop(handle)  # 404s: nothing left to stop
    assert not await launcher.alive(handle)


async def test_real_client_reports_refusals(real_api: tuple[KubernetesJobsAPI, Any]) -> None:
    api, store = real_api
    store["forbidden"].add("secrets")
    launcher = K8sLauncher(api, namespace=NS, image=IMAGE, ttl_seconds=600)
    with pytest.raises(LauncherError, match="403"):
        await launcher.start(instance())
    assert ("jobs", f"skyscan-{SCAN_ID}") not in store["objects"]
