"""`python -m services.notifier`: run the notifier service with uvicorn."""

from services.notifier.service import DEFINITION
from shared.service import serve

serve(DEFINITION)
