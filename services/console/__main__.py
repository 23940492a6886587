"""`python -m services.console`: the web console on 127.0.0.1:8006 (QS_PORT moves it)."""

import uvicorn

from services.console.app import create_app
from services.console.settings import ConsoleSettings
from shared.logs import configure_logging

settings = ConsoleSettings()
configure_logging(settings.log_level, "console")
uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
            access_log=False)
