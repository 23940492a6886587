"""`python -m services.sandbox`: the provider sandbox on 127.0.0.1:8005.

The port is QS_SANDBOX_PORT, else QS_PORT (what scripts/stack.sh passes), else 8005.
"""

import os

import uvicorn

from services.sandbox.app import create_app

port = int(os.environ.get("QS_SANDBOX_PORT") or os.environ.get("QS_PORT") or "8005")
uvicorn.run(create_app(), host=os.environ.get("QS_SANDBOX_HOST", "127.0.0.1"), port=port,
            access_log=False)
