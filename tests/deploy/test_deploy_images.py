"""The Dockerfiles, checked statically (no Docker engine runs here), and their agreement with the chart.

What would otherwise only show up in a cluster: an entry point that is not installed, an image the chart names
without a Dockerfile, a floating base image, root, a health check on the wrong route or port, a package left
out of the wheel, a pilot executable not where the TMS looks for it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
import tomllib
from pathlib import Path

import pytest
from deploy_support import ROOT, TMS_AND_INGRESS, Render, Rendered

import ewms_tms.config
from skydriver.launchers import k8s as k8s_launcher

DOCKER_DIR = ROOT / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))
IMAGES = [path.name.removesuffix(".Dockerfile") for path in DOCKERFILES]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VENV = "/opt/venv"
# the route each served port's HEALTHCHECK must call: the service's unauthenticated health route
HEALTH_ROUTES = {"skydriver": "/", "wms": "/v1/"}
PINNED = re.compile(r"^[\w.\-/]+(:\d+\.\d+\.\d+[\w.\-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclasses.dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            logical.append(re.sub(r"\s+", " ", pending).strip())
            pending = ""
    stages: list[Stage] = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        if keyword.upper() == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip(), []))
        else:
            stages[-1].instructions.append(Instruction(keyword.upper(), args))
    return stages


def runtime(path: Path) -> Stage:
    return parse(path)[-1]


def command(path: Path) -> list[str]:
    (cmd,) = runtime(path).all("CMD")
    argv: list[str] = json.loads(cmd)  # exec form: no shell between the runtime and the service
    return argv


def env(stage: Stage) -> dict[str, str]:
    found: dict[str, str] = {}
    for args in stage.all("ENV"):
        found.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return found


def defines(module: str, function: str) -> bool:
    """Whether `module` exists and defines `function` at top level (read, not imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    tree = ast.parse(Path(spec.origin).read_text())
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function for node in tree.body)


def test_there_is_a_dockerfile_per_image() -> None:
    assert IMAGES == ["pilot", "scanner", "skydriver", "tms", "wms"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_entry_point_is_installed(dockerfile: Path) -> None:
    argv = command(dockerfile)
    if argv[:2] == ["python", "-m"]:
        module = argv[2]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"no module {module}"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, f"no {module}.__main__"
    else:
        scripts = PYPROJECT["project"]["scripts"]
        assert argv[0] in scripts, f"{argv[0]} is not a console script in pyproject.toml"
        module, _, function = scripts[argv[0]].partition(":")
        assert defines(module, function), f"{scripts[argv[0]]} does not exist"


def test_scanner_image_runs_what_the_k8s_launcher_starts() -> None:
    scanner = DOCKER_DIR / "scanner.Dockerfile"
    assert command(scanner) == k8s_launcher.SCANNER_COMMAND
    assert runtime(scanner).all("USER")[-1] == f"{k8s_launcher.SCANNER_UID}:{k8s_launcher.SCANNER_UID}"
    # SKYDRIVER_RECO_IMAGE may name this image: pilots run `python -m skydriver.recos.client` in it
    assert importlib.util.find_spec("skydriver.recos.client") is not None


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_base_images_are_pinned_and_shared(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    names = {stage.name for stage in stages}
    external = [stage.base for stage in stages if stage.base not in names]
    for base in external:
        assert PINNED.match(base) and (":" in base or "@" in base), f"{base}: pin an exact version or a digest"
    # one base everywhere: the venv's interpreter is at the same path in every image, so a pilot can run
    # `SKYDRIVER_RECO_IMAGE=host` tasks with the interpreter path skydriver puts in the task's command
    assert set(external) == {parse(DOCKERFILES[0])[0].base}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_runtime_installs_the_wheel_built_in_a_builder_stage(dockerfile: Path) -> None:
    build, final = parse(dockerfile)
    assert build.name
    (build_run,) = build.all("RUN")
    assert "pip wheel" in build_run and f"python -m venv {VENV}" in build_run and "/dist/" in build_run
    copies = final.all("COPY")
    assert copies == [f"--from={build.name} {VENV} {VENV}"]  # nothing from the source tree
    assert env(final)["PATH"].startswith(f"{VENV}/bin:")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_the_wheel_is_built_from_every_package(dockerfile: Path) -> None:
    build = parse(dockerfile)[0]
    copied = {args.split()[0] for args in build.all("COPY")} - {"pyproject.toml"}
    packaged = {pattern.removesuffix("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert copied == packaged, "the COPY lines and pyproject.toml's packages must name the same packages"
    assert all((ROOT / package / "__init__.py").exists() for package in copied)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = runtime(dockerfile).all("USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes' runAsNonRoot can check it"
    assert gid.isdigit() and int(gid) != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_labels_carry_the_version_build_argument(dockerfile: Path) -> None:
    final = runtime(dockerfile)
    assert "VERSION=dev" in final.all("ARG")
    labels = " ".join(final.all("LABEL"))
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert f'org.opencontainers.image.title="{dockerfile.name.removesuffix(".Dockerfile")}"' in labels


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_no_entrypoint_surprises(dockerfile: Path) -> None:
    """`apptainer exec IMAGE cmd`, the launcher's and the pilots' commands run exactly what they name."""
    assert runtime(dockerfile).all("ENTRYPOINT") == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_healthcheck_where_a_port_is_served(dockerfile: Path) -> None:
    final = runtime(dockerfile)
    image = dockerfile.name.removesuffix(".Dockerfile")
    exposed = final.all("EXPOSE")
    checks = final.all("HEALTHCHECK")
    assert bool(exposed) == bool(checks) == (image in HEALTH_ROUTES)
    if not exposed:
        return
    (check,) = checks
    url = re.search(r"http://127\.0\.0\.1:%s(/[^']*)' % os\.environ\.get\('(\w+)', '(\d+)'\)", check)
    assert url is not None, check
    path, variable, default_port = url.groups()
    assert path == HEALTH_ROUTES[image]
    assert env(final)[variable] == default_port == exposed[0]
    assert env(final)[variable.replace("_PORT", "_HOST")] == "0.0.0.0"


def test_pilot_executable_is_where_the_tms_looks() -> None:
    (field,) = [
        f for f in dataclasses.fields(ewms_tms.config.Config) if f.metadata.get("env") == "TMS_PILOT_EXECUTABLE"
    ]
    runs = " ".join(runtime(DOCKER_DIR / "pilot.Dockerfile").all("RUN"))
    assert f"ln -s {VENV}/bin/ewms-pilot {field.default}" in runs
    assert command(DOCKER_DIR / "pilot.Dockerfile") == ["ewms-pilot"]


def test_tms_image_reads_the_mounted_condor_config_and_has_the_bindings() -> None:
    tms = DOCKER_DIR / "tms.Dockerfile"
    assert env(runtime(tms))["CONDOR_CONFIG"] == "/etc/condor/condor_config"
    assert "[htcondor]" in parse(tms)[0].all("RUN")[0]
    assert "htcondor" in PYPROJECT["project"]["optional-dependencies"]


def test_readme_has_a_build_command_per_image() -> None:
    readme = (DOCKER_DIR / "README.md").read_text()
    for image in IMAGES:
        assert f"-f docker/{image}.Dockerfile" in readme


# -- agreement with the chart --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full(render: Render) -> Rendered:
    """Every component on: the TMS too."""
    return render(TMS_AND_INGRESS)


def image_name(reference: str) -> str:
    """`docker://ghcr.io/x/pilot:1.0` -> `pilot`."""
    return reference.removeprefix("docker://").rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def test_every_image_the_chart_names_has_a_dockerfile(full: Rendered) -> None:
    named = {
        image_name(c["image"])
        for d in full.of_kind("Deployment")
        for c in [
            *d["spec"]["template"]["spec"].get("initContainers", []),
            *d["spec"]["template"]["spec"]["containers"],
        ]
    }
    config = {k: v for m in full.of_kind("ConfigMap") for k, v in m.get("data", {}).items()}
    named |= {image_name(config["TMS_PILOT_IMAGE"]), image_name(config["SKYDRIVER_K8S_SCANNER_IMAGE"])}
    assert named == set(IMAGES)


def test_chart_runs_each_image_as_built(full: Rendered) -> None:
    for deployment in full.of_kind("Deployment"):
        (main,) = deployment["spec"]["template"]["spec"]["containers"]
        dockerfile = DOCKER_DIR / f"{image_name(main['image'])}.Dockerfile"
        assert main["command"] == command(dockerfile)
        exposed = runtime(dockerfile).all("EXPOSE")
        assert [str(p["containerPort"]) for p in main.get("ports", [])] == exposed
        uid = runtime(dockerfile).all("USER")[-1].split(":")[0]
        assert str(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == uid
