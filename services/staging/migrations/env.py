"""Alembic environment: the shared runner of every service's migrations."""

from shared.migrations import run_env

run_env()
