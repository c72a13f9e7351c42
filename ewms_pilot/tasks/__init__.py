"""Task kinds (host command, container, in-process callable) behind one `TaskRunner` protocol.

Everything that can fail because of the host (no container platform, an image that
cannot be pulled, a callable that cannot be imported, a failing init step) fails here, at
start-up, before the pilot takes an event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from ..config import PilotConfig
from ..errors import StartupError, TaskError
from ..layout import PilotLayout
from .base import FileTaskRunner, Launcher, TaskPaths, TaskRunner
from .callable import CallableRunner, load_callable
from .command import CommandLauncher
from .container import ContainerLauncher, detect_platform, prepare_image
from .process import ProcessHandle, dump_outputs, open_outputs, run_in_thread

__all__ = ["TaskPaths", "TaskRunner", "build_init_launcher", "build_runner", "run_init"]

LOGGER = logging.getLogger(__name__)


async def build_runner(config: PilotConfig, layout: PilotLayout) -> TaskRunner:
    """The runner for `config.task_kind`, ready to take events."""
    check_external_directories(config.external_directories)
    if config.task_kind == "callable":
        os.environ["EWMS_TASK_DATA_HUB_DIR"] = str(layout.data_hub)  # the callable's view of the hub
        func = load_callable(config.task_callable)
        return CallableRunner(func, timeout=config.task_timeout, max_workers=config.max_concurrent_tasks)
    launcher = await _launcher(config, layout, image=config.task_image, init=False)
    return FileTaskRunner(
        config.task_kind,
        layout,
        launcher,
        keep_files=config.keep_all_task_files,
        dump_output=config.dump_task_output,
        max_concurrent=config.max_concurrent_tasks,
    )


async def build_init_launcher(config: PilotConfig, layout: PilotLayout) -> Launcher | None:
    """The init step's launcher, or None when no init is configured."""
    if not config.has_init:
        return None
    return await _launcher(config, layout, image=config.init_image, init=True)


async def run_init(config: PilotConfig, layout: PilotLayout, launcher: Launcher) -> None:
    """Run the init step once; its failure is a start-up failure (the node cannot work)."""
    dirs = layout.init()
    await asyncio.to_thread(dirs.create, with_task_io=False)
    LOGGER.info("running the init step (outputs in %s)", dirs.outputs)
    outputs = await asyncio.to_thread(open_outputs, dirs.stdoutfile, dirs.stderrfile)
    handle = ProcessHandle(kill_grace=launcher.kill_grace)
    run = functools.partial(launcher.launch, dirs, launcher.task_paths(dirs, with_io=False), outputs, handle)
    try:
        await run_in_thread(None, run, handle)
    except TaskError as exc:
        raise StartupError(f"{exc.reason}\n{exc.stderr_tail}") from exc
    finally:
        if config.dump_task_output:
            await asyncio.to_thread(dump_outputs, dirs.stdoutfile, dirs.stderrfile)
    if not config.keep_all_task_files:  # upstream keeps a failed init's files for debugging
        await asyncio.to_thread(dirs.remove)


async def _launcher(config: PilotConfig, layout: PilotLayout, *, image: str, init: bool) -> Launcher:
    args = config.init_args if init else config.task_args
    env = config.init_env if init else config.task_env
    timeout = config.init_timeout if init else config.task_timeout
    label = "init" if init else "task"
    if not image:
        return CommandLauncher(
            args, env=env, data_hub=layout.data_hub, timeout=timeout, kill_grace=config.task_kill_grace, label=label
        )
    platform = detect_platform(config.container_platform)
    ready_image = await prepare_image(
        platform,
        image,
        ci=config.ci,
        build_workdir=config.apptainer_build_workdir,
        must_be_dir=config.apptainer_image_directory_must_be_present,
    )
    return ContainerLauncher(
        platform,
        ready_image,
        args,
        env=env,
        data_hub=layout.data_hub,
        external_directories=config.external_directories,
        timeout=timeout,
        kill_grace=config.task_kill_grace,
        debug=config.container_debug,
        docker_shm_size=config.docker_shm_size,
        label=label,
    )


def check_external_directories(directories: tuple[str, ...]) -> None:
    """A missing external directory (e.g. CVMFS not mounted) would fail every event; fail once, now."""
    for d in directories:
        if not os.path.isabs(d) or not os.path.isdir(d):
            raise StartupError(f"EWMS_PILOT_EXTERNAL_DIRECTORIES: {d!r} is not an existing absolute directory")
