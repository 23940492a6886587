"""The whole stack as separate processes on free loopback ports: the sandbox and four services.

The same processes ``make up`` runs (``python -m services.<name>``), each with its own port, a
topic prefix and database schemas unique to the stack, on a real Kafka broker and PostgreSQL
cluster, so several stacks can share one broker and one database without seeing each other.
The notifier runs on the simulation clock (closing business day D sets its "now" to 09:00 of
D+1 in Asia/Shanghai) and sends to the sandbox, so a replay of months takes seconds.

Used by the end-to-end tests (``tests/e2e/conftest.py``) and the chaos test
(:mod:`shared.ops.chaos`): :meth:`Stack.kill9` is a SIGKILL of a service's process group (no
shutdown, nothing in flight committed) and :meth:`Stack.start` restarts it with the same
environment. Processes are started in their own session, so a kill reaches only them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ADMIN", "ROOT", "SERVICES", "Stack", "StackError", "free_port", "running_stack",
           "stack_for"]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer qs-dev-admin"}
SERVICES = ("ingest", "staging", "notifier", "incentives")
CHANNELS = ("sms", "email", "voice", "letter")


class StackError(AssertionError):
    """A service refused, died or did not get ready. An AssertionError, so that a test using the
    stack reports it as a failed check and :meth:`Stack.wait_for` keeps polling through it."""


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """Processes of one stack: their URLs, environments and log files (``logs/<name>.log``)."""

    prefix: str
    urls: dict[str, str]
    envs: dict[str, dict[str, str]]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10,
                                                                      headers=ADMIN))
    # spawn and stop_all may run in different threads (a restart still waiting when a run is
    # abandoned): once stopped, nothing is spawned any more, so no process outlives the stack
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = False

    def url(self, service: str, path: str) -> str:
        return f"{self.urls[service]}{path}"

    def schema(self, service: str) -> str:
        return self.envs[service]["QS_DB_SCHEMA"]

    def post_event(self, event: dict[str, Any]) -> None:
        r = self.client.post(self.url("ingest", "/v1/events"), json=event)
        if r.status_code != 202:
            raise StackError(f"ingest answered {r.status_code}: {r.text}")

    def get(self, service: str, path: str, **params: Any) -> httpx.Response:
        return self.client.get(self.url(service, path), params=params or None)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill9(self, name: str) -> None:
        """SIGKILL a service: no shutdown, no commit of anything in flight."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def spawn(self, name: str) -> subprocess.Popen:
        """Start a service's process with its environment, without waiting for it."""
        module = f"services.{name}"
        with self._lock, (self.logs / f"{name}.log").open("ab") as log:
            if self._stopped:
                raise StackError(f"the stack is stopped; {name} not started")
            proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT,  # noqa: S603
                                    env=self.envs[name], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.procs[name] = proc
        return proc

    def wait_ready(self, *names: str, timeout: float = 180.0) -> None:
        """Wait until every named service answers ``/readyz`` with 200; fail at once if one
        exits, and name the ones not ready after ``timeout``."""
        pending = set(names)

        def ready() -> bool:
            for name in sorted(pending):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with {proc.returncode}:\n"
                                     + self.log_tail(name))
                try:
                    if httpx.get(self.url(name, "/readyz"), timeout=3).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            return not pending

        try:
            self.wait_for(ready, timeout=timeout, fatal=(StackError,))
        except StackError as exc:
            if not pending or "exited" in str(exc):
                raise
            name = sorted(pending)[0]
            raise StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}; "
                             f"{name}'s log ends:\n{self.log_tail(name)}") from exc

    def start(self, name: str) -> None:
        """(Re)start a service with its environment and wait until it is ready."""
        self.spawn(name)
        self.wait_ready(name)

    def start_all(self) -> None:
        """Start the sandbox and the four services at once, then wait until all are ready."""
        for name in self.envs:
            self.spawn(name)
        self.wait_ready(*self.envs)

    def stop_all(self, timeout: float = 40.0) -> None:
        """SIGTERM every process still running (SIGKILL after ``timeout``); close the client."""
        with self._lock:
            self._stopped = True
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.client.close()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_for(self, check: Callable[[], Any], timeout: float = 60.0,
                 fatal: tuple[type[BaseException], ...] = ()) -> Any:
        """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

        HTTP errors, missing keys and failed assertions count as "not yet", except the
        ``fatal`` exception types, which end the wait at once.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except fatal:
                raise
            except (httpx.HTTPError, KeyError, AssertionError) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.3)
        raise StackError(f"condition not met in {timeout}s; last: {last!r}")


def stack_for(logs: Path, kafka: str, database_url: str, *, partitions: int = 3,
              extra_env: dict[str, str] | None = None) -> Stack:
    """A stack (not started) on free loopback ports with a fresh topic prefix and schemas."""
    uid = uuid.uuid4().hex[:8]
    ports = {n: free_port() for n in ("sandbox", *SERVICES)}
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    base = dict(os.environ, QS_KAFKA_BOOTSTRAP=kafka, QS_DATABASE_URL=database_url,
                QS_TOPIC_PREFIX=f"e{uid}", QS_TOPIC_PARTITIONS=str(partitions),
                QS_RELAY_POLL_INTERVAL_S="0.1", QS_LOG_LEVEL="INFO", **(extra_env or {}))
    envs = {"sandbox": dict(base, QS_SANDBOX_PORT=str(ports["sandbox"]))}
    for name in SERVICES:
        env = dict(base, QS_PORT=str(ports[name]), QS_DB_SCHEMA=f"e_{uid}_{name}")
        if name == "notifier":
            env.update(QS_SIMULATION_CLOCK="true",
                       **{f"QS_PROVIDER_{c.upper()}_URL": f"{sandbox}/v1/{c}" for c in CHANNELS})
        envs[name] = env
    logs.mkdir(parents=True, exist_ok=True)
    return Stack(prefix=f"e{uid}", urls={n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
                 envs=envs, logs=logs)


@contextmanager
def running_stack(logs: Path, kafka: str, database_url: str, **kwargs: Any) -> Iterator[Stack]:
    """A started stack (see :func:`stack_for`), stopped on exit whatever happened."""
    stack = stack_for(logs, kafka, database_url, **kwargs)
    try:
        stack.start_all()
        yield stack
    finally:
        stack.stop_all()
