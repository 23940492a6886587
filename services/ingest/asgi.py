"""The ingest app as uvicorn builds it in each worker process: ``services.ingest.asgi:app``.

A factory in a module of its own, so that uvicorn's worker processes (``QS_INGEST_WORKERS`` > 1)
can import it without running ``__main__`` again.
"""

from fastapi import FastAPI

from services.ingest.service import create_ingest_app
from services.ingest.settings import IngestSettings
from shared.gc_tuning import tune_gc
from shared.logs import configure_logging


def app() -> FastAPI:
    settings = IngestSettings()
    configure_logging(settings.log_level, "ingest")
    built = create_ingest_app(settings)
    # everything built so far (~120,000 objects: modules, the app, its OpenAPI models) lives as
    # long as the process; a smaller young generation than the consumers' suits requests
    tune_gc(young=20_000, middle=10, old=10)
    return built
