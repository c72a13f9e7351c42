"""Task runners on this host: placeholders, host commands (timeouts kill the tree), callables, containers."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from testsupport import wait_gone

from ewms_pilot.config import PilotConfig
from ewms_pilot.errors import CallableError, ContainerRunError, StartupError, TaskTimeoutError
from ewms_pilot.layout import CONTAINER_DATA_HUB, CONTAINER_TASK_IO, PilotLayout
from ewms_pilot.tasks import build_init_launcher, build_runner, run_init
from ewms_pilot.tasks.base import FileTaskRunner, build_argv, host_environment
from ewms_pilot.tasks.callable import CallableRunner, load_callable
from ewms_pilot.tasks.command import CommandLauncher
from ewms_pilot.tasks.container import ContainerLauncher, detect_platform, prepare_image

# -- helpers ------------------------------------------------------------------------------------


def make_layout(tmp_path: Path, infile_ext: str = ".in", outfile_ext: str = ".out") -> PilotLayout:
    layout = PilotLayout.from_parent(str(tmp_path), infile_ext, outfile_ext)
    layout.prepare()
    return layout


def command_runner(
    layout: PilotLayout,
    args: str,
    *,
    time_limit: float | None = None,
    env: dict[str, str] | None = None,
    keep: bool = False,
) -> FileTaskRunner:
    launcher = CommandLauncher(args, env=env or {}, data_hub=layout.data_hub, timeout=time_limit, kill_grace=0.5)
    return FileTaskRunner("command", layout, launcher, keep_files=keep, dump_output=False)


def config(**env: str) -> PilotConfig:
    base = {
        "EWMS_PILOT_QUEUE_INCOMING": "i",
        "EWMS_PILOT_QUEUE_OUTGOING": "o",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "localhost",
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": "localhost",
    }
    return PilotConfig.from_env({**base, **env})


# -- placeholders -------------------------------------------------------------------------------


def test_all_placeholder_spellings() -> None:
    repl = {
        "{{INFILE}}": "/d/in",
        "{{IN_FILE}}": "/d/in",
        "{{OUTFILE}}": "/d/out",
        "{{OUT_FILE}}": "/d/out",
        "{{DATA_HUB}}": "/hub",
        "{{DATAHUB}}": "/hub",
    }
    args = "reco --in {{INFILE}} --in2={{IN_FILE}} --out {{OUTFILE}} {{OUT_FILE}} --hub {{DATA_HUB}}/x {{DATAHUB}}"
    assert build_argv(args, repl) == [
        "reco", "--in", "/d/in", "--in2=/d/in", "--out", "/d/out", "/d/out", "--hub", "/hub/x", "/hub",
    ]  # fmt: skip


def test_split_like_a_shell_without_a_shell() -> None:
    argv = build_argv("sh -c 'cat {{INFILE}} > {{OUTFILE}}; echo $HOME'", {"{{INFILE}}": "/i", "{{OUTFILE}}": "/o"})
    assert argv == ["sh", "-c", "cat /i > /o; echo $HOME"]


def test_a_path_with_spaces_stays_one_argument() -> None:
    assert build_argv("cat {{INFILE}}", {"{{INFILE}}": "/my data/in"}) == ["cat", "/my data/in"]


def test_host_environment_hides_pilot_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN", "secret")
    monkeypatch.setenv("_EWMS_PILOT_DOCKER_SHM_SIZE", "1g")
    env = host_environment({"MINE": "1"})
    assert "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN" not in env and "_EWMS_PILOT_DOCKER_SHM_SIZE" not in env
    assert env["MINE"] == "1" and env["PATH"] == os.environ["PATH"]


# -- host commands ------------------------------------------------------------------------------


async def test_command_round_trip_and_cleanup(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    runner = command_runner(layout, "sh -c 'tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'")
    out = await runner.run("ev1", "hello")
    assert out.present and out.data == "HELLO"
    await runner.aclose()  # directory removal runs in the background
    assert sorted(p.name for p in layout.root.iterdir()) == ["data-hub"]


async def test_json_files(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, ".json", ".json")
    script = "import json,sys; d=json.load(open(sys.argv[1])); json.dump({'sum': sum(d)}, open(sys.argv[2], 'w'))"
    runner = command_runner(layout, f'{sys.executable} -c "{script}" {{{{INFILE}}}} {{{{OUTFILE}}}}')
    out = await runner.run("ev", [1, 2, 3])
    assert out.data == {"sum": 6}


async def test_task_environment(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, outfile_ext=".json")
    script = (
        "import json,os; keys=['EWMS_TASK_INFILE','EWMS_TASK_OUTFILE','EWMS_TASK_DATA_HUB_DIR','MY_VAR'];"
        "json.dump({k: os.environ.get(k) for k in keys}, open(os.environ['EWMS_TASK_OUTFILE'], 'w'))"
    )
    runner = command_runner(layout, f'{sys.executable} -c "{script}"', env={"MY_VAR": "42"}, keep=True)
    out = await runner.run("ev", "x")
    event_dir = layout.root / "ev" / "task-io"
    assert out.data == {
        "EWMS_TASK_INFILE": str(event_dir / "infile-ev.in"),
        "EWMS_TASK_OUTFILE": str(event_dir / "outfile-ev.json"),
        "EWMS_TASK_DATA_HUB_DIR": str(layout.data_hub),
        "MY_VAR": "42",
    }


async def test_exit_zero_without_outfile_is_nothing_to_publish(tmp_path: Path) -> None:
    out = await command_runner(make_layout(tmp_path), "true").run("ev", "x")
    assert out.present is False


async def test_nonzero_exit_reports_code_and_traceback(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    script = "import sys; print('noise', file=sys.stderr); raise KeyError('pixel 7')"
    runner = command_runner(layout, f'{sys.executable} -c "{script}"')
    with pytest.raises(ContainerRunError) as info:
        await runner.run("ev", "x")
    assert info.value.exit_code == 1
    assert info.value.stderr_tail.startswith("Traceback (most recent call last):")
    assert info.value.stderr_tail.endswith("KeyError: 'pixel 7'")
    assert not (layout.root / "ev").exists()  # cleaned up on failure too, as upstream


async def test_missing_program_is_a_task_failure(tmp_path: Path) -> None:
    with pytest.raises(ContainerRunError, match="cannot start"):
        await command_runner(make_layout(tmp_path), "/no/such/program {{INFILE}}").run("ev", "x")


async def test_bad_infile_type_fails_the_event(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    with pytest.raises(Exception, match="json") as info:
        await command_runner(layout, "true").run("ev", {"a": 1})
    assert type(info.value).__name__ == "InvalidDataForInfileException"


async def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    pids = layout.data_hub / "pids"
    args = f"sh -c 'echo $$ > {pids}; sleep 100 & echo $! >> {pids}; sleep 100'"
    with pytest.raises(TaskTimeoutError) as info:
        await command_runner(layout, args, time_limit=1).run("ev", "x")
    assert "timed out" in str(info.value)
    shell, background = (int(p) for p in pids.read_text().split())
    assert wait_gone(shell, 10.0) and wait_gone(background, 10.0)


async def test_background_leftovers_die_with_their_event(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    pid_file = layout.data_hub / "pid"
    out = await command_runner(layout, f"sh -c 'sleep 100 & echo $! > {pid_file}; echo ok > {{{{OUTFILE}}}}'").run(
        "ev", "x"
    )
    assert out.data == "ok\n"
    assert wait_gone(int(pid_file.read_text()), 10.0)


async def test_cancellation_kills_the_tree(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    fifo = layout.data_hub / "started"
    os.mkfifo(fifo)
    runner = command_runner(layout, f"sh -c 'sleep 100 & echo $! > {fifo}; wait'")
    task = asyncio.create_task(runner.run("ev", "x"))
    background = int(await asyncio.to_thread(fifo.read_text))  # the task announces itself through the FIFO
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_gone(background, 10.0)
    assert not (layout.root / "ev").exists()


def test_an_interrupted_handle_never_starts_the_process(tmp_path: Path) -> None:
    import signal

    from ewms_pilot.tasks.process import Interrupted, ProcessHandle, open_outputs, run_process

    handle = ProcessHandle(kill_grace=1)
    handle.send(signal.SIGTERM)  # the pilot gave up before the worker thread got to the spawn
    marker = tmp_path / "ran"
    outputs = open_outputs(tmp_path / "out", tmp_path / "err")
    with pytest.raises(Interrupted):
        run_process(
            ["touch", str(marker)],
            env=dict(os.environ),
            outputs=outputs,
            stderr_path=tmp_path / "err",
            time_limit=None,
            label="task",
            handle=handle,
        )
    assert not marker.exists()


async def test_init_writes_the_data_hub(tmp_path: Path) -> None:
    cfg = config(
        EWMS_PILOT_TASK_ARGS="true",
        EWMS_PILOT_INIT_ARGS="sh -c 'echo ready > {{DATA_HUB}}/init.txt; echo $EWMS_TASK_DATA_HUB_DIR >&2'",
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(tmp_path),
    )
    layout = make_layout(tmp_path)
    launcher = await build_init_launcher(cfg, layout)
    assert launcher is not None
    await run_init(cfg, layout, launcher)
    assert (layout.data_hub / "init.txt").read_text() == "ready\n"
    assert sorted(p.name for p in layout.root.iterdir()) == ["data-hub"]  # init dir removed on success


async def test_failing_init_is_a_startup_error(tmp_path: Path) -> None:
    cfg = config(EWMS_PILOT_TASK_ARGS="true", EWMS_PILOT_INIT_ARGS="sh -c 'echo no network >&2; exit 7'")
    layout = make_layout(tmp_path)
    launcher = await build_init_launcher(cfg, layout)
    assert launcher is not None
    with pytest.raises(StartupError, match="exit code 7") as info:
        await run_init(cfg, layout, launcher)
    assert "no network" in str(info.value)
    assert len(list(layout.root.glob("init-*/outputs/stderrfile"))) == 1  # kept for debugging


# -- callables ----------------------------------------------------------------------------------


def double(data: Any) -> Any:
    return {"double": data * 2}


async def async_double(data: Any) -> Any:
    await asyncio.sleep(0)
    return data * 2


def nothing(_data: Any) -> None:
    return None


def broken(_data: Any) -> Any:
    raise ZeroDivisionError("pixel out of range")


async def slow(_data: Any) -> Any:
    await asyncio.Event().wait()


async def raises_timeout(_data: Any) -> Any:
    raise TimeoutError("my own timeout")


async def test_sync_and_async_callables() -> None:
    assert (await CallableRunner(double, timeout=None).run("e", 2)).data == {"double": 4}
    assert (await CallableRunner(async_double, timeout=None).run("e", 2)).data == 4
    assert (await CallableRunner(nothing, timeout=None).run("e", 2)).present is False


async def test_sync_callable_runs_in_a_thread() -> None:
    import threading

    loop_thread = threading.get_ident()
    out = await CallableRunner(lambda _d: threading.get_ident(), timeout=None).run("e", 1)
    assert out.data != loop_thread


async def test_callable_failure_keeps_the_traceback() -> None:
    with pytest.raises(CallableError) as info:
        await CallableRunner(broken, timeout=None).run("e", 1)
    assert info.value.kind == "ZeroDivisionError"
    assert "ZeroDivisionError: pixel out of range" in info.value.stderr_tail
    assert "Traceback" in info.value.stderr_tail


async def test_callable_timeout() -> None:
    with pytest.raises(TaskTimeoutError):
        await CallableRunner(slow, timeout=0.05).run("e", 1)
    with pytest.raises(CallableError, match="my own timeout"):  # the task's own TimeoutError is not ours
        await CallableRunner(raises_timeout, timeout=10).run("e", 1)


async def test_timed_out_sync_callable_is_abandoned_not_awaited() -> None:
    import threading

    from ewms_pilot.tasks import callable as callable_module

    release = threading.Event()
    runner = CallableRunner(lambda d: release.wait() if d == "stuck" else d, timeout=0.5)
    with pytest.raises(TaskTimeoutError):
        await runner.run("e", "stuck")
    assert callable_module.stuck_callable_threads() == 1  # the pilot will exit without joining it
    # the stuck thread gave up its task slot: the next event runs (in a new thread) instead of queueing behind it
    assert (await runner.run("e", "next")).data == "next"
    abandoned = list(callable_module._ABANDONED)
    release.set()
    assert all([call.finished and await asyncio.to_thread(call.finished.wait, 10) for call in abandoned])
    assert callable_module.stuck_callable_threads() == 0
    await runner.aclose()


async def test_sync_callable_cancelled_before_it_ran_is_skipped() -> None:
    import threading

    release, ran = threading.Event(), []

    def task(d: str) -> str:
        ran.append(d)
        if d == "first":
            release.wait()
        return d

    runner = CallableRunner(task, timeout=None)
    first = asyncio.create_task(runner.run("e", "first"))
    second = asyncio.create_task(runner.run("e", "second"))  # queued behind "first": one task slot
    await asyncio.sleep(0)  # both calls handed over
    second.cancel()
    release.set()
    assert (await first).data == "first"
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (await runner.run("e", "third")).data == "third"
    assert ran == ["first", "third"]
    await runner.aclose()


def test_load_callable() -> None:
    assert load_callable("os.path:join") is os.path.join
    assert load_callable("os:path.join") is os.path.join
    with pytest.raises(StartupError, match="cannot import"):
        load_callable("no_such_module_xyz:f")
    with pytest.raises(StartupError, match="no attribute"):
        load_callable("os:no_such_function")
    with pytest.raises(StartupError, match="not callable"):
        load_callable("os:sep")


async def test_build_callable_runner(tmp_path: Path) -> None:
    mod = tmp_path / "my_task_mod.py"
    mod.write_text(textwrap.dedent("def run(d):\n    return d + 1\n"))
    sys.path.insert(0, str(tmp_path))
    try:
        runner = await build_runner(config(EWMS_PILOT_TASK_CALLABLE="my_task_mod:run"), make_layout(tmp_path))
        assert (await runner.run("e", 1)).data == 2
    finally:
        sys.path.remove(str(tmp_path))


# -- containers ---------------------------------------------------------------------------------


def test_no_container_platform_is_a_startup_error(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(StartupError, match="neither 'apptainer' nor 'docker'"):
        detect_platform("", path=str(empty))
    with pytest.raises(StartupError, match="_EWMS_PILOT_CONTAINER_PLATFORM=apptainer"):
        detect_platform("apptainer", path=str(empty))


async def test_container_task_fails_at_start_up_without_a_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(StartupError, match="neither"):
        await build_runner(config(EWMS_PILOT_TASK_IMAGE="alpine:3"), make_layout(tmp_path))


async def test_docker_without_an_engine_fails_at_start_up() -> None:
    if detect_platform("", path=os.environ.get("PATH")) != "docker":
        pytest.skip("this test exercises the docker CLI without an engine")
    with pytest.raises(StartupError, match="docker pull"):
        await prepare_image("docker", "alpine:3", ci=False, build_workdir="/var/tmp", must_be_dir=True)


async def test_apptainer_needs_a_sandbox_dir(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="sandbox"):
        await prepare_image("apptainer", "docker://alpine", ci=False, build_workdir="/var/tmp", must_be_dir=True)
    assert await prepare_image("apptainer", str(tmp_path), ci=False, build_workdir="/", must_be_dir=True) == str(
        tmp_path
    )


@pytest.mark.parametrize("platform", ["apptainer", "docker"])
def test_container_command_line(tmp_path: Path, platform: str) -> None:
    layout = make_layout(tmp_path)
    ext = tmp_path / "cvmfs"
    launcher = ContainerLauncher(
        platform,
        "reco:1",
        "run --in {{INFILE}} --out {{OUTFILE}} --hub {{DATA_HUB}}",
        env={"A": "1"},
        data_hub=layout.data_hub,
        external_directories=[str(ext)],
        timeout=None,
        kill_grace=1,
    )
    dirs = layout.event("ev")
    argv = launcher.argv(dirs, launcher.task_paths(dirs))
    assert argv[0] == platform
    image_at = argv.index("reco:1")
    assert argv[image_at + 1 :] == [
        "run", "--in", f"{CONTAINER_TASK_IO}/infile-ev.in", "--out", f"{CONTAINER_TASK_IO}/outfile-ev.out",
        "--hub", str(CONTAINER_DATA_HUB),
    ]  # fmt: skip
    options = argv[:image_at]
    assert f"--mount=type=bind,source={layout.data_hub},target=/ewms-pilot-data/data-hub" in options
    assert f"--mount=type=bind,source={dirs.task_io},target=/ewms-pilot-data/task-io" in options
    assert f"--mount=type=bind,source={ext},target={ext},readonly" in options
    assert "--env=A=1" in options
    assert f"--env=EWMS_TASK_INFILE={CONTAINER_TASK_IO}/infile-ev.in" in options
    assert "--env=EWMS_TASK_DATA_HUB_DIR=/ewms-pilot-data/data-hub" in options
    if platform == "apptainer":
        assert {"--containall", "--no-eval"} <= set(options)
    else:
        assert "--rm" in options and "--name=ewms-task-ev" in options
