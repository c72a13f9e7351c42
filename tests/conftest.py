"""Shared fixtures: the real broker, its management API, a MongoDB wire server, private RabbitMQ nodes.

Fixtures (see each docstring):

- ``amqp_url`` (session): URL of the running RabbitMQ (``AMQP_URL`` or ``amqp://guest:guest@127.0.0.1:5672/``).
- ``management_url`` (session): RabbitMQ management API base URL with credentials
  (``RABBITMQ_MANAGEMENT_URL`` or ``http://guest:guest@127.0.0.1:15672``); ``management_api`` (session) calls it.
- ``queue_factory`` / ``queue_name`` (function): unique queue names, deleted after the test together with their
  ``<name>.dlq`` and the ``ewms-dlq-<name>`` policy.
- ``mongo_url`` (session): ``MONGODB_URL``, or a fresh ``nx-27017`` on a free port with a temporary data dir.
- ``private_rabbitmq`` / ``private_rabbitmq_factory`` (function): a throw-away RabbitMQ node that a test may
  stop, start and restart.

The broker and the management API are started by ``scripts/dev-services`` (``scripts/test`` runs it first).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
DEV_SERVICES_HINT = "start the local services with `scripts/dev-services` (scripts/test does this for you)"


# ------------------------------------------------------------------------------------------------- helpers


def _mask(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (returns True) or ``timeout`` seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _amqp_connect(url: str, timeout: float = 5.0) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.stack_timeout = timeout
    return pika.BlockingConnection(params)


def _amqp_ok(url: str, timeout: float = 5.0) -> bool:
    try:
        conn = _amqp_connect(url, timeout)
    except (pika.exceptions.AMQPError, OSError):
        return False
    with contextlib.suppress(Exception):
        conn.close()
    return True


def _split_http_credentials(url: str) -> tuple[str, str, str]:
    """``http://user:pass@host:port/x`` -> (``http://host:port/x`` without trailing /, user, password)."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, user, password


def management_request(
    management_url: str, method: str, path: str, body: object | None = None, timeout: float = 10.0
) -> tuple[int, object]:
    """Call the RabbitMQ management HTTP API; returns (status, decoded JSON or None). Never raises on 4xx/5xx."""
    base, user, password = _split_http_credentials(management_url)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, (json.loads(raw) if raw else None)
    except ValueError:
        return status, raw.decode(errors="replace")


def _with_credentials(url: str) -> str:
    """The management URL with credentials in it (guest/guest when it has none), without trailing slash."""
    base, user, password = _split_http_credentials(url)
    parts = urllib.parse.urlsplit(base)
    q = urllib.parse.quote
    netloc = f"{q(user, safe='')}:{q(password, safe='')}@{parts.netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _management_url_from_env() -> str:
    return _with_credentials(os.environ.get("RABBITMQ_MANAGEMENT_URL") or DEFAULT_MANAGEMENT_URL)


# ------------------------------------------------------------------------------------------------- RabbitMQ


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the running RabbitMQ: ``AMQP_URL`` or ``amqp://guest:guest@127.0.0.1:5672/``; fails if unreachable."""
    url = os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    try:
        conn = _amqp_connect(url)
    except (pika.exceptions.AMQPError, OSError) as exc:
        pytest.fail(f"RabbitMQ is not reachable at {_mask(url)} ({exc!r}): {DEV_SERVICES_HINT}", pytrace=False)
    conn.close()
    return url


@pytest.fixture(scope="session")
def management_url() -> str:
    """Base URL of the RabbitMQ management API, credentials included (``http://guest:guest@127.0.0.1:15672``).

    From ``RABBITMQ_MANAGEMENT_URL`` (guest/guest added when it has no credentials); fails unless
    ``GET /api/overview`` answers 200. The ``management_api`` fixture calls it for you.
    """
    url = _management_url_from_env()
    try:
        status, _ = management_request(url, "GET", "/api/overview", timeout=5)
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ management API is not reachable at {_mask(url)} ({exc!r}): {DEV_SERVICES_HINT}",
            pytrace=False,
        )
    if status != 200:
        pytest.fail(
            f"RabbitMQ management API at {_mask(url)} answered {status} to GET /api/overview: {DEV_SERVICES_HINT}",
            pytrace=False,
        )
    return url


ManagementAPI = Callable[..., tuple[int, object]]


@pytest.fixture(scope="session")
def management_api(management_url: str) -> ManagementAPI:
    """``management_api(method, path, body=None)`` -> ``(status, json)`` against :func:`management_url`.

    E.g. ``management_api("GET", "/api/policies/%2F/ewms-dlq-q1")``; 4xx/5xx are returned, not raised.
    """

    def call(method: str, path: str, body: object | None = None, timeout: float = 10.0) -> tuple[int, object]:
        return management_request(management_url, method, path, body, timeout)

    return call


class QueueFactory:
    """Makes unique queue names for one test and remembers them for cleanup.

    ``queue_factory()`` -> ``test-<testname>-<uuid8>``; ``queue_factory("out")`` -> ``...-<uuid8>-out``.
    ``queue_factory.register(name)`` adds a name made elsewhere. After the test, each remembered ``name``
    and ``name.dlq`` are deleted on the broker, and the policy ``ewms-dlq-<name>`` through the management API.
    """

    def __init__(self, test_name: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")[:80] or "test"
        self.prefix = f"test-{slug}"
        self.names: list[str] = []

    def __call__(self, suffix: str = "") -> str:
        name = f"{self.prefix}-{uuid.uuid4().hex[:8]}"
        if suffix:
            name = f"{name}-{suffix}"
        return self.register(name)

    def register(self, name: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return name

    def cleanup(self, amqp_url: str, management_url: str) -> None:
        if not self.names:
            return
        queues = [q for name in self.names for q in (name, f"{name}.dlq")]
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn = _amqp_connect(amqp_url)
            try:
                ch = conn.channel()
                for q in queues:
                    try:
                        ch.queue_delete(queue=q)
                    except pika.exceptions.ChannelClosedByBroker:  # 404 closes the channel
                        ch = conn.channel()
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        vhost = urllib.parse.quote(pika.URLParameters(amqp_url).virtual_host, safe="")
        for name in self.names:
            policy = urllib.parse.quote(f"ewms-dlq-{name}", safe="")
            # best effort: a test that never touched policies must not fail when the API is down
            with contextlib.suppress(OSError):
                management_request(management_url, "DELETE", f"/api/policies/{vhost}/{policy}", timeout=5)


@pytest.fixture
def queue_factory(request: pytest.FixtureRequest, amqp_url: str) -> Iterator[QueueFactory]:
    """Callable making unique queue names (see :class:`QueueFactory`); cleans up queues, DLQs and policies."""
    factory = QueueFactory(request.node.name)
    yield factory
    factory.cleanup(amqp_url, _management_url_from_env())


@pytest.fixture
def queue_name(queue_factory: QueueFactory) -> str:
    """A unique queue name ``test-<testname>-<uuid8>``; the queue, its ``.dlq`` and its policy go after the test."""
    return queue_factory()


# ------------------------------------------------------------------------------------------------- MongoDB


def _nx_27017_executable() -> str:
    candidate = Path(sys.executable).parent / "nx-27017"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nx-27017")
    if found:
        return found
    pytest.fail("nx-27017 is not installed next to this Python (pip install -e '.[dev]')", pytrace=False)


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _start_nx_27017(exe: str, base: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start nx-27017 on a free port with a data dir under ``base``; returns once it accepts TCP."""
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between choosing and binding it: retry
        port = _free_port()
        log_path = base / f"nx-27017-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                # nx-27017 writes a pid file even in the foreground and refuses to start while the default one
                # (/tmp/nx_27017.pid, shared by all instances) names a live process: give it its own; log once
                # (stderr, captured here) instead of also to its default /tmp/nx_27017.log
                [
                    exe,
                    "--host",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "--data-dir",
                    str(base / f"data-{port}"),
                    "--pid-file",
                    str(base / f"nx-27017-{port}.pid"),
                    "--log-file",
                    os.devnull,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def up(proc: subprocess.Popen[bytes] = proc, port: int = port) -> bool:
            return proc.poll() is not None or _port_open(port)

        ready = False
        try:
            ready = _wait_until(up, timeout=30) and proc.poll() is None
            if ready:
                return proc, port
            last_error = log_path.read_text(errors="replace")[-2000:]
        finally:
            if not ready:
                _stop_process(proc)
    pytest.fail(f"nx-27017 did not start (log tail):\n{last_error}", pytrace=False)


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``MONGODB_URL`` if set; else a fresh ``nx-27017`` (MongoDB wire protocol) on a free port.

    The server gets an empty temporary data dir, is up (accepting TCP) before the URL is handed out and is
    stopped at the end of the session. Yields ``mongodb://127.0.0.1:<port>``.
    """
    env_url = os.environ.get("MONGODB_URL")
    if env_url:
        yield env_url
        return
    proc, port = _start_nx_27017(_nx_27017_executable(), tmp_path_factory.mktemp("nx-27017"))
    try:
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        _stop_process(proc)


# ------------------------------------------------------------------------------------------------- private RabbitMQ


def _process_alive(pid: int, marker: str) -> bool:
    """True while ``pid`` runs (not a zombie) and its command line contains ``marker`` (guards PID reuse)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"Z", b"X"):
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return marker in cmdline


EPMD_PORT = 4369  # the private nodes get no ERL_EPMD_PORT (``_env`` drops ERL_*), so they use the default


def _epmd_names(timeout: float = 2.0) -> dict[str, int] | None:
    """Node names registered in the local epmd -> their distribution ports (like ``epmd -names``).

    None when epmd does not answer (a node then starts its own; nothing can be registered).
    """
    try:
        with socket.create_connection(("127.0.0.1", EPMD_PORT), timeout=timeout) as s:
            s.sendall(b"\x00\x01n")  # NAMES_REQ: 2-byte length, then 'n'
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    names = {}
    for line in data[4:].decode(errors="replace").splitlines():  # after the 4-byte epmd port: "name N at port P"
        m = re.fullmatch(r"name (\S+) at port (\d+)", line.strip())
        if m:
            names[m[1]] = int(m[2])
    return names


def _port_bindable(port: int, host: str) -> bool:
    """True if a listener could bind ``host:port`` now with SO_REUSEADDR (as Erlang and RabbitMQ do).

    Binds without listening, so a client connecting meanwhile is refused rather than accepted by the probe.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _socket_users(ports: list[int]) -> str:
    """``ss -tanp`` lines whose local port is one of ``ports`` (diagnostics; empty if ``ss`` is unavailable)."""
    try:
        out = subprocess.run(["ss", "-Htanp"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    suffixes = tuple(f":{p}" for p in ports)
    return "\n".join(line for line in out.splitlines() if len(f := line.split()) > 3 and f[3].endswith(suffixes))


class PrivateRabbitMQ:
    """A throw-away RabbitMQ node on free loopback ports with its own data dir (RECIPES.md, "A private node").

    Attributes: ``url`` (``amqp://guest:guest@127.0.0.1:<port>/``), ``port``, ``dist_port``, ``nodename``,
    ``base`` (data dir), ``management_port`` / ``management_url`` (only with ``management=True``), ``pid``,
    ``timings`` (list of ``(action, seconds)``). Methods: ``start()``, ``stop()``, ``restart()`` (blocking)
    and ``astart()``, ``astop()``, ``arestart()`` (run in a thread, for async tests whose event loop must keep
    running, e.g. a client reconnecting while the node is down). Stop and start keep ports, node name and data,
    so durable queues and persistent messages survive a restart (only ``dist_port``, which nothing outside uses,
    moves if another process took it while the node was down).

    ``rabbitmq-server -detached`` discards the VM's output, so a boot that dies before RabbitMQ opens its log
    (e.g. node name still in epmd, distribution port taken) would leave no trace: ``start()`` therefore waits
    until the name and ports of a previous run are released, notices a VM that exits or crashes (reporting the
    slogan of its ``erl_crash.dump``) instead of waiting out ``START_TIMEOUT``, and boots once more if the
    failed attempt had not got as far as RabbitMQ's log.
    """

    START_TIMEOUT = 60.0  # per boot attempt, until AMQP (and the management API) answer
    STOP_TIMEOUT = 30.0
    FREE_TIMEOUT = 10.0  # how long start() waits for the node name and ports to be released before booting
    APPEAR_TIMEOUT = 15.0  # the detached VM must show up this soon after ``rabbitmq-server -detached`` returned
    BOOT_ATTEMPTS = 2

    def __init__(self, base: Path, management: bool = False) -> None:
        if not RABBITMQ_SERVER.exists():
            pytest.fail(f"{RABBITMQ_SERVER} not found: install rabbitmq-server ({DEV_SERVICES_HINT})", pytrace=False)
        self.base = base
        self.port = _free_port()
        self.management_port: int | None = None
        self.dist_port = self._new_dist_port()
        if management:
            self.management_port = _free_port()
            while self.management_port in (self.port, self.dist_port):
                self.management_port = _free_port()
        self.nodename = f"t{uuid.uuid4().hex[:10]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.management_url: str | None = f"http://guest:guest@127.0.0.1:{self.management_port}" if management else None
        self.pid: int | None = None
        self.timings: list[tuple[str, float]] = []
        self._write_config()

    def _new_dist_port(self) -> int:
        port = _free_port()
        while port in (self.port, self.management_port):
            port = _free_port()
        return port

    def __repr__(self) -> str:
        return f"PrivateRabbitMQ(nodename={self.nodename!r}, port={self.port}, pid={self.pid})"

    # -- configuration ------------------------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        conf = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "loopback_users.guest = false"]
        plugins = "[]."
        if self.management_port is not None:
            conf += ["management.tcp.ip = 127.0.0.1", f"management.tcp.port = {self.management_port}"]
            plugins = "[rabbitmq_management]."
        (self.base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (self.base / "enabled_plugins").write_text(plugins + "\n")
        (self.base / "env.conf").write_text(
            'NODE_IP_ADDRESS=127.0.0.1\nSERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        b = self.base
        env.update(
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(b / "log"),
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(b / "pid"),
            RABBITMQ_CONF_ENV_FILE=str(b / "env.conf"),
            HOME=str(b),  # a fresh Erlang cookie in the node's own dir
            ERL_EPMD_ADDRESS="127.0.0.1",  # only matters if no epmd runs yet and this node starts one
            ERL_CRASH_DUMP=str(self._crash_dump),  # a VM that dies early leaves its reason here, also when detached
        )
        return env

    # -- state --------------------------------------------------------------------------------------

    @property
    def _marker(self) -> str:
        return f"-home {self.base} "

    @property
    def _crash_dump(self) -> Path:
        return self.base / "log" / "erl_crash.dump"

    @property
    def _log_file(self) -> Path:
        return self.base / "log" / f"{self.nodename}.log"

    def _read_pid_file(self) -> int | None:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _find_pid(self) -> int | None:
        pid = self.pid or self._read_pid_file()
        if pid is not None and _process_alive(pid, self._marker):
            return pid
        for entry in os.listdir("/proc"):  # fallback: a node whose pid file is gone, found by its own data dir
            if entry.isdigit() and _process_alive(int(entry), self._marker):
                return int(entry)
        return None

    def is_running(self) -> bool:
        return self.pid is not None and _process_alive(self.pid, self._marker)

    def _registered_in_epmd(self) -> bool:
        names = _epmd_names()
        return names is not None and self.nodename.split("@")[0] in names

    def _boot_blockers(self) -> list[str]:
        """What would make a boot fail before RabbitMQ starts logging (RabbitMQ's prelaunch checks), if anything."""
        blockers = []
        names = _epmd_names()
        short = self.nodename.split("@")[0]
        if names is not None and short in names:
            blockers.append(f"node name {short} is still registered in epmd (port {names[short]})")
        if not _port_bindable(self.dist_port, "0.0.0.0"):
            blockers.append(f"distribution port {self.dist_port} is in use")
        for what, port in (("AMQP", self.port), ("management", self.management_port)):
            if port is not None and not _port_bindable(port, "127.0.0.1"):
                blockers.append(f"{what} port {port} is in use")
        return blockers

    def _crash_slogan(self) -> str | None:
        """The ``Slogan:`` (reason) of a crash dump written by this node's VM, if there is one."""
        for path in (self._crash_dump, self.base / "erl_crash.dump"):
            try:
                with path.open("rb") as f:
                    head = f.read(8192).decode(errors="replace")
            except OSError:
                continue
            for line in head.splitlines():
                if line.startswith("Slogan: "):
                    return line.removeprefix("Slogan: ")
        return None

    def _log_size(self) -> int:
        try:
            return self._log_file.stat().st_size
        except OSError:
            return 0

    def _log_tail(self) -> str:
        chunks = []
        for path in [*sorted((self.base / "log").glob("*.log")), self.base / "start.out"]:
            if path.exists():
                chunks.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(chunks)

    def _diagnostics(self) -> str:
        names = _epmd_names()
        ports = [p for p in (self.port, self.dist_port, self.management_port) if p is not None]
        return (
            f"--- epmd names: {names if names is not None else 'epmd not reachable'}\n"
            f"--- sockets on ports {ports}:\n{_socket_users(ports) or '(none)'}\n{self._log_tail()}"
        )

    # -- lifecycle (blocking) -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the node (same ports, node name and data as before); returns once AMQP accepts a login.

        Up to ``BOOT_ATTEMPTS`` boots, the next one only if the failed one died before RabbitMQ wrote to its log.
        """
        if self.is_running():
            return
        t0 = time.monotonic()
        failures: list[str] = []
        for attempt in range(1, self.BOOT_ATTEMPTS + 1):
            self._await_released()
            log_size = self._log_size()
            failure = self._boot()
            if failure is None:
                self.timings.append(("start", time.monotonic() - t0))
                return
            failures.append(f"attempt {attempt}: {failure}")
            began = self._log_size() != log_size
            if began or self.pid is not None:  # RabbitMQ itself failed (a retry would too) or the VM still runs
                break
        raise RuntimeError(
            f"private RabbitMQ {self.nodename} on port {self.port} did not start (pid {self.pid}):\n"
            + "\n".join(failures)
            + f"\n{self._diagnostics()}"
        )

    def _await_released(self) -> None:
        """Wait until no old registration or socket stands in the way of a boot; raise if one stays."""
        if _wait_until(lambda: not self._boot_blockers(), self.FREE_TIMEOUT):
            return
        if not _port_bindable(self.dist_port, "0.0.0.0"):  # nothing outside this class uses it: move it
            self.dist_port = self._new_dist_port()
        blockers = self._boot_blockers()
        if blockers:
            raise RuntimeError(
                f"private RabbitMQ {self.nodename} cannot start: {'; '.join(blockers)} "
                f"(still after {self.FREE_TIMEOUT}s)\n{self._diagnostics()}"
            )

    def _boot(self) -> str | None:
        """One ``rabbitmq-server -detached`` and the wait for it; None once ready, else why it failed."""
        for dump in (self._crash_dump, self.base / "erl_crash.dump"):
            dump.unlink(missing_ok=True)
        self.pid = None
        launched = time.monotonic()
        with (self.base / "start.out").open("ab") as out:
            rc = subprocess.run(
                [str(RABBITMQ_SERVER), "-detached"],
                env=self._env(),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
            ).returncode
        if rc != 0:
            return f"`{RABBITMQ_SERVER} -detached` exited with {rc} (see start.out)"
        deadline = launched + self.START_TIMEOUT
        checks: list[tuple[str, Callable[[], bool]]] = [("AMQP", lambda: self._amqp_ready(self.url))]
        if self.management_url is not None:
            mgmt = self.management_url
            checks.append(("management API", lambda: self._management_ok(mgmt)))
        seen: int | None = None
        for what, ready in checks:
            while not ready():
                pid = self._find_pid()
                seen = pid or seen
                slogan = self._crash_slogan()
                if slogan is not None:
                    # the VM is writing its crash dump: let it finish and exit before anyone boots again
                    _wait_until(lambda: self._find_pid() is None, 10)
                    self.pid = self._find_pid()
                    return f"the Erlang VM crashed before {what} answered: {slogan}"
                if pid is None and seen is not None:
                    return f"the Erlang VM (pid {seen}) exited before {what} answered, without a crash dump"
                if pid is None and time.monotonic() - launched > self.APPEAR_TIMEOUT:
                    return f"no Erlang VM for this node appeared within {self.APPEAR_TIMEOUT}s"
                if time.monotonic() >= deadline:
                    self.pid = pid
                    return f"{what} not ready within {self.START_TIMEOUT}s (pid {pid})"
                time.sleep(0.2)
        self.pid = self._find_pid()
        return None if self.pid is not None else "AMQP answered but the node's Erlang VM was not found"

    @staticmethod
    def _amqp_ready(url: str) -> bool:
        try:
            return _amqp_ok(url, timeout=2)
        except pika.adapters.utils.connection_workflow.AMQPConnectorException:  # e.g. a handshake timeout
            return False

    @staticmethod
    def _management_ok(url: str) -> bool:
        try:
            return management_request(url, "GET", "/api/overview", timeout=2)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the node (SIGTERM by PID, SIGKILL after STOP_TIMEOUT).

        Returns once the process is gone, its ports are closed and its name has left epmd.
        """
        pid = self._find_pid()
        if pid is None:
            self.pid = None
            return
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            return (
                not _process_alive(pid, self._marker)
                and not any(_port_open(p) for p in (self.port, self.dist_port, self.management_port) if p is not None)
                and not self._registered_in_epmd()
            )

        if not _wait_until(gone, self.STOP_TIMEOUT):
            if _process_alive(pid, self._marker):  # not a reused PID once the node is gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not _wait_until(gone, 10):
                raise RuntimeError(f"private RabbitMQ {self.nodename} (pid {pid}) did not stop\n{self._diagnostics()}")
        self.pid = None
        self.timings.append(("stop", time.monotonic() - t0))

    def restart(self) -> None:
        """Stop, then start again with the same ports and data."""
        self.stop()
        self.start()

    # -- lifecycle (async wrappers) -----------------------------------------------------------------

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)


@pytest.fixture
def private_rabbitmq_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrivateRabbitMQ]]:
    """Callable ``(management: bool = False) -> PrivateRabbitMQ``: starts a private node and returns it.

    Every node made is stopped and its data dir removed after the test.
    """
    nodes: list[PrivateRabbitMQ] = []

    def make(management: bool = False) -> PrivateRabbitMQ:
        node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"), management=management)
        nodes.append(node)
        node.start()
        return node

    yield make
    errors = []
    for node in nodes:
        try:
            node.stop()
        except Exception as exc:  # keep tearing down the others
            errors.append(exc)
        shutil.rmtree(node.base, ignore_errors=True)
    if errors:
        raise errors[0]


@pytest.fixture
def private_rabbitmq(private_rabbitmq_factory: Callable[..., PrivateRabbitMQ]) -> PrivateRabbitMQ:
    """A running private RabbitMQ node (no plugins); see :class:`PrivateRabbitMQ`."""
    return private_rabbitmq_factory()
