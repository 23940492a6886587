"""The whole stack as separate processes: the provider sandbox and the four services.

Each test module gets its own stack on free ports, with a unique topic prefix and schemas, on
the real Kafka broker and PostgreSQL cluster — the same processes `make up` runs, so what these
tests see is what an operator sees. The notifier runs on the simulation clock (closing business
day D sets its "now" to 09:00 of D+1 in Asia/Shanghai), so a replay of months takes seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DB_URL, KAFKA, free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer qs-dev-admin"}


@dataclass
class Stack:
    prefix: str
    urls: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    logs: Path | None = None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10,
                                                                      headers=ADMIN))

    def url(self, service: str, path: str) -> str:
        return f"{self.urls[service]}{path}"

    def post_event(self, event: dict[str, Any]) -> None:
        r = self.client.post(self.url("ingest", "/v1/events"), json=event)
        assert r.status_code == 202, r.text

    def get(self, service: str, path: str, **params: Any) -> httpx.Response:
        return self.client.get(self.url(service, path), params=params or None)

    def kill9(self, name: str) -> None:
        """SIGKILL a service: no shutdown, no commit of anything in flight."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def start(self, name: str) -> None:
        """(Re)start a service with its environment and wait until it is ready."""
        assert self.logs is not None
        module = "services.sandbox" if name == "sandbox" else f"services.{name}"
        proc = self.procs[name] = _start(name, module, self.envs[name], self.logs)

        def ready() -> bool:
            assert proc.poll() is None, (self.logs / f"{name}.log").read_text()[-3000:]
            return httpx.get(self.url(name, "/readyz"), timeout=3).status_code == 200

        self.wait_for(ready, timeout=180)

    def wait_for(self, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except (httpx.HTTPError, KeyError, AssertionError) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.3)
        raise AssertionError(f"condition not met in {timeout}s; last: {last!r}")


def _start(name: str, module: str, env: dict[str, str], logs: Path) -> subprocess.Popen:
    log = (logs / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    uid = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp(f"stack-{uid}")
    ports = {n: free_port() for n in ("sandbox", "ingest", "staging", "notifier", "incentives")}
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
    stack = Stack(prefix=f"e{uid}",
                  urls={n: f"http://127.0.0.1:{p}" for n, p in ports.items()})
    base = dict(os.environ, QS_KAFKA_BOOTSTRAP=KAFKA, QS_DATABASE_URL=DB_URL,
                QS_TOPIC_PREFIX=stack.prefix, QS_TOPIC_PARTITIONS="3",
                QS_RELAY_POLL_INTERVAL_S="0.1", QS_LOG_LEVEL="INFO")
    stack.logs = logs
    stack.envs["sandbox"] = dict(base, QS_SANDBOX_PORT=str(ports["sandbox"]))
    for name in ("ingest", "staging", "notifier", "incentives"):
        env = dict(base, QS_PORT=str(ports[name]), QS_DB_SCHEMA=f"e_{uid}_{name}")
        if name == "notifier":
            env.update(QS_SIMULATION_CLOCK="true",
                       **{f"QS_PROVIDER_{c.upper()}_URL": f"{sandbox_url}/v1/{c}"
                          for c in ("sms", "email", "voice", "letter")})
        stack.envs[name] = env
    try:
        for name in stack.envs:
            stack.start(name)
        yield stack
    finally:
        for proc in stack.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in stack.procs.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stack.client.close()
