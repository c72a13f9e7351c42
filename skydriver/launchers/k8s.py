"""The Kubernetes launcher: each scanner is a `batch/v1` Job, its credentials in a Secret of its own.

Per instance (handle = the Job's name, `skyscan-<scan_id>`, `-r<n>` for the watchdog's restarts):

- a Job running `python -m skydriver.scanner` from `SKYDRIVER_K8S_SCANNER_IMAGE:docker_tag`, never
  retried by Kubernetes (`backoffLimit: 0`: restarting a scanner is the watchdog's decision), cleaned
  up `ttlSecondsAfterFinished` after it ends, as a non-root user without privileges;
- a Secret with the variables that are credentials (`SECRET_ENV`), which the Job reads through
  `envFrom`, so the Job's spec — readable by anyone who may list Jobs — never holds them in clear.
  The Secret is owner-referenced to the Job, so Kubernetes deletes it with the Job.

The Job is created first (its uid is what the Secret's owner reference needs; its pod waits until
the Secret exists), then the Secret. Creating either again for the same attempt finds the first:
a skydriver that crashed halfway and starts the same attempt again does not make a twin.

The manifests are built by pure functions (validated against the Kubernetes schemas in tests); the
API calls go through `K8sJobsAPI`, with `KubernetesJobsAPI` (the `kubernetes` package's asyncio
client) as the real implementation. This is the only module that imports `kubernetes`.

RBAC the service account needs, in its namespace: `batch` `jobs` create, get, delete; core
`secrets` create, delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import aiohttp
from kubernetes.aio import client, config

from . import LauncherError, ScannerInstance

T = TypeVar("T")
Manifest = dict[str, Any]
NAME_PREFIX = "skyscan-"
APP_LABEL = "app.kubernetes.io/name"
APP = "skydriver-scanner"
SCAN_LABEL = "skydriver/scan-id"
ATTEMPT_LABEL = "skydriver/attempt"
CONTAINER = "scanner"
SCANNER_COMMAND = ["python", "-m", "skydriver.scanner"]
SCANNER_UID = 10001  # numeric, so the kubelet can check runAsNonRoot whatever user the image names
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class K8sConflict(LauncherError):
    """The object already exists (409)."""


class K8sNotFound(LauncherError):
    """There is no such object (404)."""


# -- manifests (pure) ---------------------------------------------------------------------------------


def resource_name(instance: ScannerInstance) -> str:
    """`skyscan-<scan_id>[-r<attempt>]`, the Job's and the Secret's name (a DNS label, as pod labels need)."""
    name = (NAME_PREFIX + instance.name).lower()
    if not _DNS_LABEL.match(name) or not _LABEL_VALUE.match(instance.scan_id):
        raise LauncherError(f"scan id {instance.scan_id!r} cannot name a Kubernetes Job ({name!r})")
    return name


def labels(instance: ScannerInstance) -> dict[str, str]:
    """What finds a scan's Jobs, pods and Secrets: `kubectl get jobs -l skydriver/scan-id=<id>`."""
    return {
        APP_LABEL: APP,
        "app.kubernetes.io/managed-by": "skydriver",
        SCAN_LABEL: instance.scan_id,
        ATTEMPT_LABEL: str(instance.attempt),
    }


def _cpu(cpus: float) -> str:
    return f"{round(cpus * 1000)}m"


def build_secret_manifest(instance: ScannerInstance, *, namespace: str, job_uid: str) -> Manifest:
    """The instance's credentials, owned by its Job (deleted with it)."""
    name = resource_name(instance)
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_uid}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(instance), "ownerReferences": [owner]},
        "type": "Opaque",
        "immutable": True,
        "stringData": instance.secret_env(),
    }


def _container(instance: ScannerInstance, image: str) -> Manifest:
    env = instance.plain_env()
    return {
        "name": CONTAINER,
        "image": f"{image}:{instance.docker_tag}",
        "command": SCANNER_COMMAND,
        "env": [{"name": k, "value": env[k]} for k in sorted(env)],
        "envFrom": [{"secretRef": {"name": resource_name(instance)}}],
        "resources": {
            "requests": {"cpu": _cpu(instance.cpus), "memory": str(instance.memory_bytes)},
            "limits": {"memory": str(instance.memory_bytes)},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def build_job_manifest(instance: ScannerInstance, *, namespace: str, image: str, ttl_seconds: int) -> Manifest:
    """The scanner's Job: one pod, never retried by Kubernetes, no service account token, non-root."""
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # a scanner talks to skydriver and the broker, never to Kubernetes
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SCANNER_UID,
            "runAsGroup": SCANNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(instance, image)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": resource_name(instance), "namespace": namespace, "labels": labels(instance)},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": ttl_seconds,
            "template": {"metadata": {"labels": labels(instance)}, "spec": pod_spec},
        },
    }


def job_running(job: Manifest) -> bool:
    """Whether a Job (as the API returns it) still runs or is about to: not deleted, not finished."""
    if job.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = job.get("status") or {}
    finished = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    return not finished & {"Complete", "Failed"} and not status.get("succeeded") and not status.get("failed")


# -- the API ------------------------------------------------------------------------------------------


class K8sJobsAPI(Protocol):
    """The few Kubernetes calls the launcher makes; objects are plain dicts in the API's JSON form."""

    async def create_job(self, namespace: str, manifest: Manifest) -> Manifest:
        """The created Job (with `metadata.uid`); `K8sConflict` if it exists."""
        ...

    async def read_job(self, namespace: str, name: str) -> Manifest | None:
        """The Job with its status, or None if there is none."""
        ...

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods; a Job that is not there is fine."""
        ...

    async def create_secret(self, namespace: str, manifest: Manifest) -> None:
        """`K8sConflict` if it exists."""
        ...

    async def delete_secret(self, namespace: str, name: str) -> None:
        """A Secret that is not there is fine."""
        ...

    async def aclose(self) -> None: ...


M = TypeVar("M", client.V1Job, client.V1Secret)


def _model(kind: type[M], manifest: Manifest) -> M:
    """The client's model of a manifest (its calls take models, not dicts)."""
    model = kind.from_dict(manifest)
    if model is None:
        raise LauncherError(f"not a {kind.__name__} manifest")
    return model


def _as_json(api: client.ApiClient, model: object) -> Manifest:
    """A model as the API's JSON (camelCase keys), what `K8sJobsAPI` speaks."""
    doc: Manifest = api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return doc


class KubernetesJobsAPI:
    """`K8sJobsAPI` on a real cluster: in-cluster credentials in a pod, else the kube config."""

    def __init__(self) -> None:
        self._client: client.ApiClient | None = None
        self._lock = asyncio.Lock()

    async def _api(self) -> client.ApiClient:
        """Connect on first use: loading the kube config is async, constructors are not."""
        async with self._lock:
            if self._client is None:
                try:
                    config.load_incluster_config()  # type: ignore[no-untyped-call]
                except config.ConfigException:
                    await config.load_kube_config()  # type: ignore[no-untyped-call]
                self._client = client.ApiClient()
            return self._client

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Kubernetes' errors as `LauncherError`s (409: `K8sConflict`, 404: `K8sNotFound`)."""
        try:
            return await call
        except client.ApiException as exc:
            kind = {409: K8sConflict, 404: K8sNotFound}.get(exc.status, LauncherError)
            raise kind(f"Kubernetes refused to {what}: {exc.status} {exc.reason}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LauncherError(f"cannot reach Kubernetes to {what}: {exc!r}") from None

    async def create_job(self, namespace: str, manifest: Manifest) -> Manifest:
        api = await self._api()
        body = _model(client.V1Job, manifest)
        job = await self._call("create a Job", client.BatchV1Api(api).create_namespaced_job(namespace, body))
        return _as_json(api, job)

    async def read_job(self, namespace: str, name: str) -> Manifest | None:
        api = await self._api()
        try:
            job = await self._call(f"read Job {name}", client.BatchV1Api(api).read_namespaced_job(name, namespace))
        except K8sNotFound:
            return None
        return _as_json(api, job)

    async def delete_job(self, namespace: str, name: str) -> None:
        api = await self._api()
        call = client.BatchV1Api(api).delete_namespaced_job(name, namespace, propagation_policy="Background")
        with contextlib.suppress(K8sNotFound):
            await self._call(f"delete Job {name}", call)

    async def create_secret(self, namespace: str, manifest: Manifest) -> None:
        api = await self._api()
        body = _model(client.V1Secret, manifest)
        await self._call("create a Secret", client.CoreV1Api(api).create_namespaced_secret(namespace, body))

    async def delete_secret(self, namespace: str, name: str) -> None:
        api = await self._api()
        with contextlib.suppress(K8sNotFound):
            await self._call(f"delete Secret {name}", client.CoreV1Api(api).delete_namespaced_secret(name, namespace))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None


# -- the launcher -------------------------------------------------------------------------------------


class K8sLauncher:
    """Scanners as Kubernetes Jobs in one namespace."""

    name = "k8s"

    def __init__(self, api: K8sJobsAPI, *, namespace: str, image: str, ttl_seconds: int) -> None:
        self.api = api
        self.namespace = namespace
        self.image = image
        self.ttl_seconds = ttl_seconds

    async def start(self, instance: ScannerInstance) -> str:
        name = resource_name(instance)
        job = build_job_manifest(instance, namespace=self.namespace, image=self.image, ttl_seconds=self.ttl_seconds)
        try:
            created = await self.api.create_job(self.namespace, job)
        except K8sConflict:
            found = await self.api.read_job(self.namespace, name)
            if found is None:
                raise LauncherError(f"Job {name} existed and vanished while starting it: try again") from None
            created = found
        secret = build_secret_manifest(instance, namespace=self.namespace, job_uid=created["metadata"]["uid"])
        try:
            await self.api.create_secret(self.namespace, secret)
        except K8sConflict:
            pass  # this attempt's Secret exists already: a repeated start
        except LauncherError:
            await self.api.delete_job(self.namespace, name)  # a Job without its Secret would wait forever
            raise
        return name

    async def alive(self, handle: str) -> bool:
        job = await self.api.read_job(self.namespace, handle)
        return job is not None and job_running(job)

    async def stop(self, handle: str) -> None:
        """Delete the Job (its pod gets SIGTERM and the pod's grace period), and at once its Secret."""
        await self.api.delete_job(self.namespace, handle)
        await self.api.delete_secret(self.namespace, handle)

    async def aclose(self) -> None:
        await self.api.aclose()
