"""`python -m services.staging`: run the staging service with uvicorn."""

from services.staging.service import DEFINITION
from shared.service import serve

serve(DEFINITION)
