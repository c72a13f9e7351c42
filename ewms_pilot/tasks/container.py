"""A task run as a container image: apptainer if present, else docker.

The platform is chosen once at start-up (a pilot on a node without either must fail
before it takes an event, not on every event). `_EWMS_PILOT_CONTAINER_PLATFORM` forces a
platform, as upstream's private setting does. The image is made ready once, too: pulled
for docker, or resolved to an unpacked sandbox directory for apptainer (HTCondor nodes
cannot mount SIF images without FUSE, which is why upstream insists on directories).

Inside the container the task sees upstream's fixed paths: the data hub at
`/ewms-pilot-data/data-hub`, its files at `/ewms-pilot-data/task-io/`, and each external
directory read-only at its own path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import StartupError
from ..layout import CONTAINER_DATA_HUB, CONTAINER_TASK_IO, EventDirs
from .base import TaskPaths, build_argv
from .process import OutputFds, ProcessHandle, run_process

LOGGER = logging.getLogger(__name__)

PLATFORMS = ("apptainer", "docker")


@dataclasses.dataclass(frozen=True)
class Mount:
    """A bind mount from the pilot's host into the task container."""

    source: Path
    target: Path
    readonly: bool = False

    def option(self) -> str:
        opt = f"type=bind,source={self.source},target={self.target}"
        return f"{opt},readonly" if self.readonly else opt


def detect_platform(forced: str = "", path: str | None = None) -> str:
    """Pick the container platform, or fail with a message that says what is missing."""
    search = os.environ.get("PATH", "") if path is None else path
    if forced:
        if shutil.which(forced, path=search) is None:
            raise StartupError(f"_EWMS_PILOT_CONTAINER_PLATFORM={forced} but '{forced}' is not on PATH")
        return forced
    for platform in PLATFORMS:
        if shutil.which(platform, path=search) is not None:
            return platform
    raise StartupError(
        "a container image was given (EWMS_PILOT_TASK_IMAGE/EWMS_PILOT_INIT_IMAGE) but neither "
        f"'apptainer' nor 'docker' is on PATH ({search or '<empty>'}); install one, or run the task "
        "as a host command (EWMS_PILOT_TASK_ARGS without an image)"
    )


class ContainerLauncher:
    """Builds and runs the container command line for one event (or the init step)."""

    def __init__(
        self,
        platform: str,
        image: str,
        args: str,
        *,
        env: Mapping[str, str],
        data_hub: Path,
        external_directories: Sequence[str],
        timeout: float | None,
        kill_grace: float,
        debug: bool = False,
        docker_shm_size: str = "",
        label: str = "task",
    ) -> None:
        self.platform = platform
        self.image = image
        self._args = args
        self._env = dict(env)
        self._data_hub = data_hub
        self._external = [Path(d) for d in external_directories]
        self._timeout = timeout
        self.kill_grace = kill_grace
        self._debug = debug
        self._shm_size = docker_shm_size
        self._label = label
        self._platform_env = dict(os.environ)  # the platform needs PATH etc.; the task gets a clean env

    def task_paths(self, dirs: EventDirs, *, with_io: bool = True) -> TaskPaths:
        """Inside the container, paths are upstream's fixed mount points."""
        if not with_io:
            return TaskPaths(CONTAINER_DATA_HUB)
        return TaskPaths(
            CONTAINER_DATA_HUB, CONTAINER_TASK_IO / dirs.infile_name, CONTAINER_TASK_IO / dirs.outfile_name
        )

    def mounts(self, dirs: EventDirs, *, with_io: bool = True) -> list[Mount]:
        """The data hub, the event's task-io directory, and the external directories (read-only)."""
        mounts = [Mount(self._data_hub, CONTAINER_DATA_HUB)]
        mounts += [Mount(d, d, readonly=True) for d in self._external]
        if with_io:
            mounts.append(Mount(dirs.task_io, CONTAINER_TASK_IO))
        return mounts

    def argv(self, dirs: EventDirs, paths: TaskPaths, *, with_io: bool = True) -> list[str]:
        """The full `apptainer run ...` or `docker run ...` command line."""
        env = {**self._env, **paths.env()}
        options = [f"--mount={m.option()}" for m in self.mounts(dirs, with_io=with_io)]
        options += [f"--env={name}={value}" for name, value in sorted(env.items())]
        task_argv = build_argv(self._args, paths.replacements())
        if self.platform == "apptainer":
            debug = ["--debug"] if self._debug else []
            return ["apptainer", *debug, "run", "--containall", "--no-eval", *options, self.image, *task_argv]
        shm = [f"--shm-size={self._shm_size}"] if self._shm_size else []
        name = [f"--name={self.container_name(dirs)}"]
        return ["docker", "run", "--rm", *name, *shm, *options, self.image, *task_argv]

    @staticmethod
    def container_name(dirs: EventDirs) -> str:
        """A docker container name derived from the event, so a timeout can remove it."""
        return f"ewms-task-{dirs.event_id}"[:128]

    def launch(self, dirs: EventDirs, paths: TaskPaths, outputs: OutputFds, handle: ProcessHandle) -> None:
        with_io = paths.infile is not None
        if self.platform == "docker":  # killing `docker run` does not stop the container: remove it by name
            handle.on_kill = functools.partial(_docker_remove, self.container_name(dirs))
        run_process(
            self.argv(dirs, paths, with_io=with_io),
            env=self._platform_env,
            outputs=outputs,
            stderr_path=dirs.stderrfile,
            time_limit=self._timeout,
            label=self._label,
            handle=handle,
        )


def _docker_remove(name: str) -> None:
    """Remove a container by name (blocking; best effort)."""
    subprocess.run(["docker", "rm", "--force", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


async def prepare_image(platform: str, image: str, *, ci: bool, build_workdir: str, must_be_dir: bool) -> str:
    """Make the image usable once, before any event; returns what to pass to `run`."""
    if platform == "docker":
        if ci:
            LOGGER.warning("CI is set: skipping 'docker pull %s' (images are loaded by the test setup)", image)
            return image
        await _check_call(["docker", "pull", image], image)
        return image
    if await asyncio.to_thread(os.path.isdir, image):
        return image
    if must_be_dir:
        raise StartupError(
            f"apptainer image {image!r} is not an unpacked directory (sandbox) on this host, and "
            "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT forbids converting it"
        )
    source = image if ("://" in image or image.endswith(".sif")) else f"docker://{image}"
    sandbox = Path(build_workdir) / source.replace("://", "_").replace("/", "_")
    await _check_call(["apptainer", "build", "--fix-perms", "--sandbox", str(sandbox), source], image)
    return str(sandbox)


async def _check_call(argv: list[str], image: str) -> None:
    """Run a set-up command; its last stderr line goes into the start-up error."""
    LOGGER.info("running: %s", " ".join(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode:
        last = (err.decode(errors="replace").strip().splitlines() or ["<no stderr>"])[-1]
        raise StartupError(f"preparing image {image!r} failed: {' '.join(argv)} -> exit {proc.returncode}: {last}")
