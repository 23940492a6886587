"""The gateway's OpenAPI responses describe the headers the event routes send."""

from __future__ import annotations

import pytest

from services.ingest import openapi


@pytest.mark.parametrize("responses", [openapi.single_responses(), openapi.batch_responses()])
def test_documented_headers_match_what_the_routes_send(responses: dict) -> None:
    assert "WWW-Authenticate" in responses[401]["headers"]  # every 401 carries "Bearer"
    for status in (429, 503):
        assert "Retry-After" in responses[status]["headers"]


def test_a_batch_result_may_carry_every_per_item_status() -> None:
    status = openapi.batch_responses()[207]["content"]["application/json"]["schema"][
        "properties"]["results"]["items"]["properties"]["status"]
    assert set(status["enum"]) == {202, 400, 403, 413, 422, 503}
