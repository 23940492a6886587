"""Start, stop and inspect the local stack through the project's own scripts.

``up`` is ``make up`` (venv, dependencies, PostgreSQL, Kafka, topics, the services) and ``down``
is ``make down`` (the services, then Kafka and PostgreSQL). With ``services_only`` both act on
the services and the sandbox alone (``scripts/stack.sh start|stop``), leaving Kafka and
PostgreSQL running. ``status`` is ``scripts/stack.sh status`` (exit 1 unless all are ready).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["ACTIONS", "ROOT", "run_stack", "stack_command"]

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = ("up", "down", "status")


def stack_command(action: str, services_only: bool = False) -> list[str]:
    """The command line that performs ``action``, to be run from the repository root."""
    if action == "status":
        return ["bash", "scripts/stack.sh", "status"]
    if action == "up":
        return ["bash", "scripts/stack.sh", "start"] if services_only else ["make", "up"]
    if action == "down":
        return ["bash", "scripts/stack.sh", "stop"] if services_only else ["make", "down"]
    raise ValueError(f"unknown stack action {action!r}; expected one of {', '.join(ACTIONS)}")


def run_stack(action: str, services_only: bool = False) -> int:
    """Run ``action`` from the repository root with the caller's terminal; its exit code."""
    cmd = stack_command(action, services_only)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode  # noqa: S603 - fixed argv
