"""The Helm chart: lint, schema, Kubernetes validity, and agreement with the services it deploys.

Every rendering is checked against the Kubernetes schemas (kubernetes-validate --strict: wrong types and
unknown fields fail) for the oldest Kubernetes the chart supports and the newest the validator knows. The
environment the chart gives each container is resolved (ConfigMaps, the Secret, the downward API) and fed to
the service's own config dataclass, so a misspelt variable or a value a service refuses fails here, not in a
cluster. The tokens the chart mints are checked with the services' own auth settings.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from deploy_support import (
    CHART_DIR,
    EXTERNAL,
    NAMESPACE,
    OPENID,
    ROOT,
    TMS_AND_INGRESS,
    VALUE_SETS,
    Manifest,
    Render,
    Rendered,
)
from rest_tools.utils.auth import Auth

import ewms_mq
import ewms_tms.config
import ewms_wms.config
import skydriver.config
from ewms_config import ConfigError
from skydriver.launchers import k8s as k8s_launcher

CONFIGS: dict[str, type[Any]] = {
    "SKYDRIVER_": skydriver.config.Config,
    "WMS_": ewms_wms.config.Config,
    "TMS_": ewms_tms.config.Config,
}
CONTAINER_CONFIG = {"skydriver": "SKYDRIVER_", "wms": "WMS_", "tms": "TMS_", "mint-wms-token": "WMS_"}
OLDEST_KUBERNETES = "1.27"  # Chart.yaml kubeVersion
# Bitnami's charts come from an OCI registry this machine cannot reach; they stay off unless an operator
# fetches them (`helm dependency build`, docs/deploy.md). Helm lint reports their absence, and nothing else may.
MISSING_SUBCHARTS = "chart directory is missing these dependencies: rabbitmq,mongodb"


def settings(config: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    """A config dataclass's fields by environment variable name."""
    return {f.metadata["env"]: f for f in dataclasses.fields(config) if "env" in f.metadata}


def containers(pod_owner: Manifest) -> list[Manifest]:
    spec = pod_owner["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def resolve_env(rendered: Rendered, spec: Manifest) -> tuple[dict[str, str], set[str]]:
    """The container's environment as the kubelet would build it, and the Secret keys it needs but lacks."""
    config_maps = {m["metadata"]["name"]: m.get("data", {}) for m in rendered.of_kind("ConfigMap")}
    secrets = {
        m["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in m.get("data", {}).items()}
        for m in rendered.of_kind("Secret")
    }
    env: dict[str, str] = {}
    missing: set[str] = set()
    for source in spec.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var["valueFrom"]:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[var["name"]] = NAMESPACE
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is not None:
                env[var["name"]] = value
            elif not ref.get("optional"):
                missing.add(ref["key"])
    return env, missing


def container(rendered: Rendered, component: str, name: str | None = None) -> Manifest:
    (found,) = [c for c in containers(rendered.deployment(component)) if c["name"] == (name or component)]
    return found


def deployed_components(rendered: Rendered) -> list[str]:
    return [d["metadata"]["labels"]["app.kubernetes.io/component"] for d in rendered.of_kind("Deployment")]


# -- Helm's own checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(value_set: str) -> None:
    report = helm_python.lint(CHART_DIR, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2 and m["error"] != MISSING_SUBCHARTS]
    assert problems == []
    assert set(report["errors"]) <= {MISSING_SUBCHARTS}


def test_chart_version_follows_the_project() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]  # the default image tag


def test_optional_subcharts_are_off_by_default(chart: helm_python.Chart) -> None:
    declared = {d["name"]: d for d in chart.metadata["dependencies"]}
    assert {name: d["condition"] for name, d in declared.items()} == {
        "rabbitmq": "rabbitmq.enabled",
        "mongodb": "mongodb.enabled",
    }
    assert chart.values["rabbitmq"]["enabled"] is False
    assert chart.values["mongodb"]["enabled"] is False


@pytest.mark.parametrize(
    ("values", "where", "complaint"),
    [
        ({"wms": {"maxDeliveries": "three"}}, "/wms/maxDeliveries", "want integer"),
        ({"tms": {"enabled": "yes"}}, "/tms/enabled", "want boolean"),
        ({"skydriver": {"defaultClusters": {"sub-2": "many"}}}, "/skydriver/defaultClusters/sub-2", "want integer"),
        ({"skydriver": {"service": {"port": 0}}}, "/skydriver/service/port", "minimum"),
        ({"wms": {"log": {"level": "LOUD"}}}, "/wms/log/level", "value must be one of"),
        ({"externalMongodb": {"url": "postgres://db"}}, "/externalMongodb/url", ""),
        ({"skydriver": {"config": {"WMS_PORT": "1"}}}, "", "'WMS_PORT' does not match pattern '^SKYDRIVER_"),
        ({"skydriver": {"replicas": 2}}, "/skydriver", "additional properties 'replicas' not allowed"),
    ],
)
def test_wrong_values_fail_the_schema_with_a_message(
    chart: helm_python.Chart, values: dict[str, Any], where: str, complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart.render(values, name="sd", namespace=NAMESPACE)
    assert f"at '{where}" in str(caught.value)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rabbitmq": {"enabled": True}}, "rabbitmq.auth.password: set it when rabbitmq.enabled"),
        ({"mongodb": {"enabled": True}}, "mongodb.auth.rootPassword: set it when mongodb.enabled"),
        ({"tms": {"enabled": True}}, "tms.clusterLocation: name this access point"),
        ({"tms": {"enabled": True, "clusterLocation": "sub-2"}}, "tms.condor: give the HTCondor client configuration"),
        ({"ingress": {"enabled": True}}, "ingress.enabled: give ingress.skydriver.host and/or ingress.wms.host"),
    ],
)
def test_incomplete_values_fail_with_what_to_set(
    chart: helm_python.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        chart.render(values, name="sd", namespace=NAMESPACE)


# -- Kubernetes validity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_kubernetes(rendered: Rendered, kubernetes: str) -> None:
    assert rendered.manifests
    for manifest in rendered.manifests:
        try:
            kubernetes_validate.validate(manifest, kubernetes, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {where}: {exc.message}")


def test_value_sets_deploy_what_they_say(rendered: Rendered) -> None:
    expected = {"skydriver", "wms"} | ({"tms"} if rendered.values.get("tms", {}).get("enabled") else set())
    assert set(deployed_components(rendered)) == expected
    assert bool(rendered.of_kind("Ingress")) == bool(rendered.values.get("ingress", {}).get("enabled"))


# -- the services' own configuration ----------------------------------------------------------------------


def test_every_variable_the_chart_sets_is_a_real_setting(rendered: Rendered) -> None:
    for deployment in rendered.of_kind("Deployment"):
        for c in containers(deployment):
            env, _ = resolve_env(rendered, c)
            for name in env:
                prefix = next((p for p in CONFIGS if name.startswith(p)), None)
                if prefix is None:
                    continue
                assert prefix == CONTAINER_CONFIG[c["name"]], f"{name} set on container {c['name']}"
                assert name in settings(CONFIGS[prefix]), f"{name} is not a setting of {CONFIGS[prefix].__module__}"


def test_secret_settings_come_from_the_secret(rendered: Rendered) -> None:
    """A variable its service marks secret is never in a ConfigMap or a pod spec."""
    for deployment in rendered.of_kind("Deployment"):
        for c in containers(deployment):
            prefix = CONTAINER_CONFIG[c["name"]]
            secret_names = {name for name, f in settings(CONFIGS[prefix]).items() if f.metadata["secret"]}
            config_maps = {m["metadata"]["name"]: m["data"] for m in rendered.of_kind("ConfigMap")}
            for source in c.get("envFrom", []):
                assert not secret_names & set(config_maps[source["configMapRef"]["name"]])
            for var in c.get("env", []):
                if var["name"] in secret_names:
                    assert "secretKeyRef" in var.get("valueFrom", {}), var["name"]


def test_each_service_accepts_the_environment_it_is_given(rendered: Rendered) -> None:
    for component in deployed_components(rendered):
        env, missing = resolve_env(rendered, container(rendered, component))
        config_class = CONFIGS[CONTAINER_CONFIG[component]]
        if rendered.name == "default":
            # no broker or database given: the pod cannot start (NOTES.txt says what to set)
            assert missing == ({"mongodb-url", "broker-url"} if component == "wms" else {"mongodb-url"})
            assert "no MongoDB is configured" in rendered.notes
            assert "no RabbitMQ is configured" in rendered.notes
            with pytest.raises(ConfigError, match="MONGODB_URL is required"):
                config_class.from_env(env)
            continue
        assert missing == set()
        config = config_class.from_env(env)
        if component == "skydriver":
            assert config.launcher == "k8s"
            assert config.k8s_namespace == NAMESPACE
            assert config.public_url == f"http://sd-skydriver-ewms-skydriver.{NAMESPACE}.svc:8000"
            assert config.wms_url == f"http://sd-skydriver-ewms-wms.{NAMESPACE}.svc:8080"
            assert config.k8s_scanner_image == "ghcr.io/skydriver-ewms/scanner"
        if component == "tms":
            assert config.wms_url == f"http://sd-skydriver-ewms-wms.{NAMESPACE}.svc:8080"
            assert config.claimant == "sub-2@sd-skydriver-ewms"  # stable across pods: claims come back to it
            assert config.pilot_image == "docker://ghcr.io/skydriver-ewms/pilot:0.1.0"


def test_operator_settings_reach_the_services(render: Render) -> None:
    rendered = render(TMS_AND_INGRESS)
    sd = skydriver.config.Config.from_env(resolve_env(rendered, container(rendered, "skydriver"))[0])
    wms = ewms_wms.config.Config.from_env(resolve_env(rendered, container(rendered, "wms"))[0])
    tms = ewms_tms.config.Config.from_env(resolve_env(rendered, container(rendered, "tms"))[0])
    assert sd.default_clusters == {"sub-2": 100}
    assert sd.max_active_scans == 20
    assert wms.provision_poll_seconds == 5.0
    assert wms.broker_public_address == "rabbitmq.example.org:5671/ewms"
    assert wms.rabbitmq_management_url == "https://rabbitmq.example.org:15671"
    assert tms.watcher_interval == 30.0
    assert tms.pilot_env == {"EWMS_PILOT_PREFETCH": "4", "EWMS_PILOT_KEEP_ALL_TASK_FILES": "false"}


def test_subchart_connection_urls_keep_special_passwords(render: Render) -> None:
    values = {
        "rabbitmq": {"enabled": True, "auth": {"password": "p@ss/w:rd?"}},
        "mongodb": {"enabled": True, "auth": {"rootPassword": "m@ngo/pw"}},
    }
    rendered = render(values)
    wms = ewms_wms.config.Config.from_env(resolve_env(rendered, container(rendered, "wms"))[0])
    assert wms.broker_address == ewms_mq.parse_address("amqp://ewms:p%40ss%2Fw%3Ard%3F@sd-rabbitmq:5672/")
    assert wms.broker_address.password == "p@ss/w:rd?"
    assert wms.mongodb_url == "mongodb://root:m%40ngo%2Fpw@sd-mongodb:27017/?authSource=admin"


def test_existing_secret_replaces_the_charts_own(render: Render) -> None:
    rendered = render({**OPENID, "existingSecret": "skydriver-ewms-credentials"})
    assert rendered.of_kind("Secret") == []
    refs = [
        var["valueFrom"]["secretKeyRef"]
        for deployment in rendered.of_kind("Deployment")
        for c in containers(deployment)
        for var in c.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    ]
    assert {ref["name"] for ref in refs} == {"skydriver-ewms-credentials"}
    assert {ref["key"] for ref in refs} == {
        "mongodb-url",
        "broker-url",
        "broker-public-address",
        "rabbitmq-management-url",
        "skydriver-scanner-token",
        "skydriver-wms-token",
        "tms-oauth-client-secret",
    }


# -- tokens ----------------------------------------------------------------------------------------------------


def pod_env(env: dict[str, str]) -> dict[str, str]:
    """Only `env`, as in the pod, with `python` being the project's interpreter (as `/opt/venv/bin` is there)."""
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_in_pod(command: list[str], env: dict[str, str]) -> str:
    """`command` as `kubectl exec` would run it in the pod."""
    done = subprocess.run(command, env=pod_env(env), capture_output=True, text=True, check=True)
    return done.stdout.strip()


def claims(token: str, config: Any) -> dict[str, Any]:
    """The token's claims as the service checks them (signature, issuer, expiry)."""
    settings = config.rest_tools_auth()
    auth = Auth(settings["secret"], issuer=settings["issuer"], algorithm=settings["algorithm"])  # type: ignore[no-untyped-call]
    result: dict[str, Any] = auth.validate(token)  # type: ignore[no-untyped-call]
    return result


@pytest.mark.parametrize("component", ["skydriver", "tms"])
def test_minted_wms_token_is_valid_at_the_wms(render: Render, tmp_path: Path, component: str) -> None:
    rendered = render(TMS_AND_INGRESS)
    init = container(rendered, component, "mint-wms-token")
    main_env, _ = resolve_env(rendered, container(rendered, component))
    token_file = Path(main_env[f"{CONTAINER_CONFIG[component]}WMS_TOKEN_FILE"])
    assert {"name": "tokens", "mountPath": str(token_file.parent)} in init["volumeMounts"]

    # the init container's own command, writing into tmp_path instead of the pod's memory volume
    shell, flag, script, *args = init["command"]
    assert (shell, flag) == ("sh", "-c")
    script = script.replace(str(token_file.parent), str(tmp_path))
    init_env, _ = resolve_env(rendered, init)
    subprocess.run([shell, flag, script, *args], env=pod_env(init_env), check=True)
    written = tmp_path / token_file.name
    assert written.stat().st_mode & 0o077 == 0  # readable by the pod's user only

    wms = ewms_wms.config.Config.from_env(resolve_env(rendered, container(rendered, "wms"))[0])
    token_claims = claims(written.read_text().strip(), wms)
    role = "user" if component == "skydriver" else "tms"
    assert token_claims[wms.auth_role_claim] == role
    assert token_claims["sub"] == ("skydriver" if component == "skydriver" else "tms-sub-2")


def test_notes_tell_how_to_mint_tokens_that_work(render: Render) -> None:
    rendered = render(EXTERNAL)
    pattern = r"exec deploy/(\S+) -c (\S+) -- \\\n\s+(ewms-token --service \S+) (\S+) (\S+)"
    commands = re.findall(pattern, rendered.notes)
    assert [(deploy, c, role) for deploy, c, _, _, role in commands] == [
        ("sd-skydriver-ewms-skydriver", "skydriver", "user"),
        ("sd-skydriver-ewms-wms", "wms", "tms"),
    ]
    for _, component, command, subject, role in commands:
        env, _ = resolve_env(rendered, container(rendered, component))
        config = CONFIGS[CONTAINER_CONFIG[component]].from_env(env)
        token_claims = claims(run_in_pod([*command.split(), subject, role], env), config)
        assert (token_claims["sub"], token_claims[config.auth_role_claim]) == (subject, role)


def test_openid_mode_mints_nothing(render: Render) -> None:
    rendered = render(OPENID)
    for component in ("skydriver", "tms"):
        assert "initContainers" not in rendered.deployment(component)["spec"]["template"]["spec"]
    assert "kubectl" not in rendered.notes.split("2. Get a token")[1].split("3.")[0]
    assert "keycloak.example.org" in rendered.notes


# -- Kubernetes permissions and pod hardening -----------------------------------------------------------------

# what each call of the launcher's Kubernetes interface needs: (API group, resource, verb)
LAUNCHER_CALLS = {
    "create_job": ("batch", "jobs", "create"),
    "read_job": ("batch", "jobs", "get"),
    "delete_job": ("batch", "jobs", "delete"),
    "create_secret": ("", "secrets", "create"),
    "delete_secret": ("", "secrets", "delete"),
}


def test_role_lets_the_k8s_launcher_do_its_calls_in_its_namespace_only(rendered: Rendered) -> None:
    api_calls = {name for name in dir(k8s_launcher.K8sJobsAPI) if not name.startswith("_")} - {"aclose"}
    assert api_calls == set(LAUNCHER_CALLS), "a new launcher call: add the permission it needs to the chart's Role"
    assert rendered.of_kind("ClusterRole") == [] and rendered.of_kind("ClusterRoleBinding") == []
    (role,) = rendered.of_kind("Role")
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # exactly what the launcher calls (docs/deploy.md): no list/watch, so no reading the namespace's other Secrets
    assert allowed == set(LAUNCHER_CALLS.values())
    (binding,) = rendered.of_kind("RoleBinding")
    pod = rendered.deployment("skydriver")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    namespace_var = next(v for v in container(rendered, "skydriver")["env"] if v["name"] == "SKYDRIVER_K8S_NAMESPACE")
    assert namespace_var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_only_skydriver_gets_a_kubernetes_token(rendered: Rendered) -> None:
    for component in deployed_components(rendered):
        pod = rendered.deployment(component)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is (component == "skydriver")


def test_pods_run_locked_down(rendered: Rendered) -> None:
    for deployment in rendered.of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in containers(deployment):
            assert c["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        # a read-only root: every writable place is a volume
        assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def unauthenticated_get(package: str, path: str) -> bool:
    """Whether the service's OpenAPI document has `GET path` without a token."""
    doc = json.loads((ROOT / package / "schema" / "openapi.json").read_text())
    return path in doc["paths"] and doc["paths"][path]["get"].get("security") == []


@pytest.mark.parametrize(
    ("component", "health", "alive"),
    [("skydriver", "/", "/schema/openapi"), ("wms", "/v1/", "/v1/schema/openapi")],
)
def test_probes_use_the_services_unauthenticated_routes(
    rendered: Rendered, component: str, health: str, alive: str
) -> None:
    package = {"skydriver": "skydriver", "wms": "ewms_wms"}[component]
    assert unauthenticated_get(package, health) and unauthenticated_get(package, alive)
    c = container(rendered, component)
    assert c["readinessProbe"]["httpGet"] == {"path": health, "port": "http"}  # 503 while MongoDB is away
    assert c["livenessProbe"]["httpGet"] == {"path": alive, "port": "http"}  # no database: no restart loops
    assert c["startupProbe"]["httpGet"] == {"path": alive, "port": "http"}
    env, _ = resolve_env(rendered, c)
    port = c["ports"][0]
    assert (port["name"], str(port["containerPort"])) == ("http", env[f"{CONTAINER_CONFIG[component]}PORT"])
    assert env[f"{CONTAINER_CONFIG[component]}HOST"] == "0.0.0.0"
    (service,) = [s for s in rendered.of_kind("Service") if s["metadata"]["name"].endswith(f"-{component}")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ingress_routes_users_to_skydriver_and_tmss_to_the_wms(render: Render) -> None:
    for wms_host in ("ewms.example.org", "skydriver.example.org"):  # separate hosts, or one host for both
        values = {**TMS_AND_INGRESS, "ingress": {**TMS_AND_INGRESS["ingress"], "wms": {"host": wms_host}}}
        (ingress,) = render(values).of_kind("Ingress")
        routes = {
            (rule["host"], p["path"]): p["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for p in rule["http"]["paths"]
        }
        assert routes == {
            ("skydriver.example.org", "/"): "sd-skydriver-ewms-skydriver",
            (wms_host, "/v1"): "sd-skydriver-ewms-wms",
        }
        assert len(ingress["spec"]["rules"]) == len({host for host, _ in routes})
        assert ingress["spec"]["tls"] == TMS_AND_INGRESS["ingress"]["tls"]
