"""`python -m services.ingest`: run the ingest gateway with uvicorn (127.0.0.1:8001)."""

import uvicorn

from services.ingest.service import create_ingest_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging

settings = IngestSettings()
configure_logging(settings.log_level, "ingest")
# factory: the Kafka producer must be built inside uvicorn's running event loop
uvicorn.run(lambda: create_ingest_app(settings), factory=True, host=settings.host,
            port=settings.port, log_config=None, access_log=False,
            timeout_graceful_shutdown=20)
