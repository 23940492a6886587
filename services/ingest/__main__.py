"""`python -m services.ingest`: run the ingest gateway with uvicorn (127.0.0.1:8001).

With ``QS_INGEST_WORKERS`` > 1 this process supervises that many worker processes, each
serving the same port (``services/ingest/workers.py`` says how and why).
"""

import os
import sys

import uvicorn

from services.ingest.settings import IngestSettings
from services.ingest.workers import WORKER_ENV, serve_worker, supervise
from shared.logs import configure_logging

settings = IngestSettings()
configure_logging(settings.log_level, "ingest")
if os.environ.get(WORKER_ENV) == "1":
    serve_worker(settings)
elif settings.ingest_workers > 1:
    sys.exit(supervise(settings))
else:
    # factory: the Kafka producer must be built inside uvicorn's running event loop
    uvicorn.run("services.ingest.asgi:app", factory=True, host=settings.host,
                port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=20)
