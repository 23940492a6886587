"""Wait until a Kafka broker answers a real metadata request.

Used by scripts/kafka.sh start (not a sleep): connects with aiokafka, fetches the
cluster metadata and checks that at least one broker is registered. Retries until
the deadline.

    python scripts/kafka_ready.py [--bootstrap 127.0.0.1:9092] [--timeout 60] [--quiet]

Exit codes: 0 ready, 1 not ready before the deadline, 2 aiokafka not importable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time


async def _probe_once(bootstrap: str, request_timeout_s: float) -> int:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout_s * 1000),
        client_id="qingshou-kafka-ready",
    )
    try:
        # bootstrap() already sends a MetadataRequest to the bootstrap server.
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers())
    finally:
        await client.close()


async def wait_ready(bootstrap: str, timeout_s: float, quiet: bool) -> bool:
    deadline = time.monotonic() + timeout_s
    attempt = 0
    last_error = "no attempt"
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            brokers = await asyncio.wait_for(
                _probe_once(bootstrap, max(1.0, min(5.0, remaining))),
                timeout=max(1.0, min(6.0, remaining)),
            )
            if brokers > 0:
                if not quiet:
                    print(f"kafka ready at {bootstrap} ({brokers} broker(s), attempt {attempt})")
                return True
            last_error = "metadata has no brokers"
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            if not quiet:
                print(
                    f"kafka NOT ready at {bootstrap} after {timeout_s:.0f}s "
                    f"({attempt} attempts; last error: {last_error})",
                    file=sys.stderr,
                )
            return False
        await asyncio.sleep(0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get(
            "QS_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('QS_KAFKA_PORT', '9092')}"
        ),
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    # aiokafka logs every refused connection at ERROR; those are expected while waiting.
    logging.basicConfig(level=logging.CRITICAL)
    try:
        import aiokafka  # noqa: F401
    except ImportError as exc:
        print(
            f"kafka_ready: cannot import aiokafka ({exc}); run with the project venv",
            file=sys.stderr,
        )
        return 2
    ok = asyncio.run(wait_ready(args.bootstrap, args.timeout, args.quiet))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
