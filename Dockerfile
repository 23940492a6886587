# One image for the four Qingshou services. Pick the service with the command:
#
#   docker build -t qingshou .
#   docker run --rm -e QS_HOST=0.0.0.0 -p 127.0.0.1:8002:8002 qingshou python -m services.staging
#
# docker-compose.yml builds this image once and runs it four times (ingest :8001, staging :8002,
# notifier :8003, incentives :8004); the healthchecks live there because each service has its
# own port. Configuration is by QS_* environment variables only (see .env.example).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid; it owns nothing in the image (the code is read-only
# to it) and needs no home directory beyond the app folder.
RUN groupadd --system --gid 10001 qingshou \
    && useradd --system --uid 10001 --gid qingshou --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin qingshou

WORKDIR /app

# The project: its runtime dependencies from pyproject.toml (no dev extras), then the code.
# The services run from /app (`python -m` puts the working directory first on sys.path), so
# each service finds its Alembic folder (services/<name>/migrations) next to its code.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info \
    && python -c "import services.ingest.service, services.staging.service, \
services.notifier.service, services.incentives.service"

USER qingshou

# ingest, staging, notifier, incentives
EXPOSE 8001 8002 8003 8004

# Listen on every interface inside the container; publish ports on the host as needed.
ENV QS_HOST=0.0.0.0

# Overridden per service (docker-compose.yml sets `command: python -m services.<name>`).
CMD ["python", "-m", "services.ingest"]
