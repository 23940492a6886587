"""`python -m services.ingest`: run the ingest gateway with uvicorn (127.0.0.1:8001)."""

import uvicorn
from fastapi import FastAPI

from services.ingest.service import create_ingest_app
from services.ingest.settings import IngestSettings
from shared.gc_tuning import tune_gc
from shared.logs import configure_logging


def _app() -> FastAPI:
    app = create_ingest_app(settings)
    # everything built so far (~120,000 objects: modules, the app, its OpenAPI models) lives as
    # long as the process; a smaller young generation than the consumers' suits requests
    tune_gc(young=20_000, middle=10, old=10)
    return app


settings = IngestSettings()
configure_logging(settings.log_level, "ingest")
# factory: the Kafka producer must be built inside uvicorn's running event loop
uvicorn.run(_app, factory=True, host=settings.host, port=settings.port, log_config=None,
            access_log=False, timeout_graceful_shutdown=20)
