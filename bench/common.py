"""What the parts of `bench/report.py` share: result tables, progress lines, the machine, the broker, /proc.

Nothing here measures anything by itself.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pika

REPO = Path(__file__).resolve().parents[1]
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017")
QUORUM = {"x-queue-type": "quorum"}
_STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line on stderr, with the seconds since the bench started."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- results ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of a part's table: a figure, optionally against a target."""

    what: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: a figure without a target

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclasses.dataclass
class Part:
    """A part of the report: a title, a table of figures, and the prose that says how they were made."""

    title: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    method: list[str] = dataclasses.field(default_factory=list)  # paragraphs: settings, definitions
    extra_tables: list[tuple[str, list[str], list[list[str]]]] = dataclasses.field(default_factory=list)
    error: str | None = None  # the part could not run to the end

    def add(self, what: str, value: str, target: str = "", passed: bool | None = None) -> None:
        self.rows.append(Row(what, value, target, passed))

    def table(self, caption: str, header: list[str], rows: list[list[str]]) -> None:
        self.extra_tables.append((caption, header, rows))


def print_part(part: Part) -> None:
    """A part's tables and figures on stdout, for the parts' own command lines."""
    print(part.title)
    for caption, header, rows in part.extra_tables:
        print(f"{caption}:")
        for cells in [header, *rows]:
            print("  " + " | ".join(cells))
    for row in part.rows:
        print(f"{row.what}: {row.value} {row.target} {row.verdict}".rstrip())
    if part.error:
        print(part.error)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: with 1000 samples p99 is the 10th largest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return math.nan
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx else math.nan


# -- the broker ---------------------------------------------------------------------------------


class QueueWatch:
    """Passive declares on one blocking connection: a queue's ready messages and consumers, right now."""

    def __init__(self, url: str = AMQP_URL) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()

    def depth(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of `queue`."""
        ok = self._channel.queue_declare(queue, passive=True).method
        return int(ok.message_count), int(ok.consumer_count)

    def declare(self, queue: str) -> None:
        self._channel.queue_declare(queue, durable=True, arguments=QUORUM)

    def delete(self, *queues: str) -> None:
        for queue in queues:
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                self._channel.queue_delete(queue)
            if self._channel.is_closed:
                self._channel = self._connection.channel()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()

    def __enter__(self) -> QueueWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def _management(path: str) -> Any:
    parts = urllib.parse.urlsplit(MANAGEMENT_URL)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    request = urllib.request.Request(base + path)
    auth = f"{urllib.parse.unquote(parts.username or 'guest')}:{urllib.parse.unquote(parts.password or 'guest')}"
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)


def rabbitmq_version() -> str:
    try:
        overview = _management("/api/overview")
        return f"{overview['rabbitmq_version']} (Erlang {overview.get('erlang_version', '?')})"
    except (OSError, ValueError, KeyError):
        return "unknown (management API unreachable)"


def mongodb_server() -> str:
    """What answers at MONGODB_URL: the version it reports, and whether it is the dev services' wire server."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]] = MongoClient(MONGODB_URL, serverSelectionTimeoutMS=3000)
    try:
        info = client.admin.command("buildInfo")
    except PyMongoError:
        return "unreachable"
    finally:
        client.close()
    version = f"reports version {info.get('version', '?')}"
    if any("nx-27017" in cmdline(pid) for pids in shared_service_pids().values() for pid in pids):
        return f"nx-27017, the dev services' MongoDB wire-protocol server (Python, on SQLite); {version}"
    return version


def kombu_url(url: str = AMQP_URL) -> str:
    """An `amqp://` URL as kombu reads it: the vhost is the path without its leading slash, percent-encoded."""
    parts = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + urllib.parse.quote(vhost, safe=""), "", ""))


# -- processes ----------------------------------------------------------------------------------

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (and its reaped children), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICK


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_matching(predicate: Callable[[int, str], bool]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and predicate(int(entry), cmdline(int(entry))):
            found.append(int(entry))
    return found


def environ_has(pid: int, item: str) -> bool:
    try:
        return item.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class CpuMeter:
    """CPU seconds per component between `start()` and `stop()`; components are found by a callback each time.

    Processes that appear between the two (pilots, scanners) count from zero; processes that exit
    before `stop()` are counted up to the last `sample()`.
    """

    def __init__(self, components: Callable[[], dict[str, list[int]]]) -> None:
        self._components = components
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._owner: dict[int, str] = {}
        self.seconds = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        for name, pids in self._components().items():
            for pid in pids:
                value = cpu_seconds(pid)
                if value is not None:
                    self._first[pid] = self._last[pid] = value
                    self._owner[pid] = name

    def sample(self) -> None:
        for name, pids in self._components().items():
            for pid in pids:
                value = cpu_seconds(pid)
                if value is None:
                    continue
                self._first.setdefault(pid, 0.0)
                self._owner.setdefault(pid, name)
                self._last[pid] = value

    def stop(self) -> dict[str, float]:
        self.sample()
        self.seconds = time.monotonic() - self._t0
        used: dict[str, float] = {}
        for pid, last in self._last.items():
            used[self._owner[pid]] = used.get(self._owner[pid], 0.0) + last - self._first[pid]
        return used


def shared_service_pids() -> dict[str, list[int]]:
    """The broker and the database server: shared with anything else running on the machine."""
    return {
        "rabbitmq (whole node)": pids_matching(lambda _pid, cmd: "beam.smp" in cmd and "rabbit" in cmd),
        "mongodb server": pids_matching(lambda _pid, cmd: _is_mongodb_server(cmd)),
    }


def _is_mongodb_server(cmd: str) -> bool:
    """The server behind MONGODB_URL: nx-27017 on its port (the dev services), or a real mongod."""
    port = str(urllib.parse.urlsplit(MONGODB_URL).port or 27017)
    args = cmd.split()
    if any(a.endswith("nx-27017") for a in args[:2]):
        return any(a == port and args[i - 1] in ("-p", "--port") for i, a in enumerate(args) if i)
    return bool(args) and args[0].endswith("mongod")


# -- the machine --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024**2:.1f} GiB"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    affinity = len(os.sched_getaffinity(0))
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical ({affinity} usable by this process)",
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_version()} ({sys.executable})",
        "RabbitMQ": rabbitmq_version(),
        "MongoDB": mongodb_server(),
        "load average at start (1, 5, 15 min)": load,
        "git": _git_commit(),
        "libraries": _versions("pika", "celery", "kombu", "pymongo", "tornado", "numpy", "scipy"),
    }


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty.strip() else ''}"


def _versions(*names: str) -> str:
    import importlib.metadata

    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    say(f"{label} ...")
    try:
        yield
    finally:
        say(f"{label}: {time.monotonic() - started:.1f}s")
