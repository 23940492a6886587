"""`python -m services.ingest`: run the ingest service with uvicorn."""

from services.ingest.service import DEFINITION
from shared.service import serve

serve(DEFINITION)
