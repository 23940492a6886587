"""`python -m services.incentives`: run the incentives service with uvicorn."""

from services.incentives.service import DEFINITION
from shared.service import serve

serve(DEFINITION)
