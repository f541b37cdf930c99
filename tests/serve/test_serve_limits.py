"""Limits: bearer key, body size, queue bound (429 + Retry-After), bad requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import openai
import pytest
from conftest import ensemble, openai_client

from qdanalysis.errors import ConfigError
from qdanalysis.runner.serve import ServeLimits, build_app
from qdanalysis.testing import MockClient

CHAT = [{"role": "user", "content": "hi"}]
KEY = "sk-serve-test-9f2c"


def test_bearer_key_from_the_environment(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QD_TEST_SERVE_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    url = serve([ensemble("single")], limits=ServeLimits(api_key_env="QD_TEST_SERVE_KEY"))
    with (
        openai_client(url, api_key="wrong") as oa,
        pytest.raises(openai.AuthenticationError) as err,
    ):
        oa.chat.completions.create(model="single", messages=CHAT)
    assert err.value.body["code"] == "invalid_api_key"
    bare = httpx.post(f"{url}/chat/completions", json={"model": "single", "messages": CHAT})
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == "Bearer"
    with openai_client(url, api_key="wrong") as oa, pytest.raises(openai.AuthenticationError):
        oa.models.list()
    with openai_client(url, api_key=KEY) as oa:
        assert oa.chat.completions.create(model="single", messages=CHAT).choices
    assert KEY not in caplog.text


def test_a_named_key_variable_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QD_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="QD_TEST_UNSET_KEY"):
        build_app([ensemble("single")], MockClient(), ServeLimits(api_key_env="QD_TEST_UNSET_KEY"))


def test_body_past_the_limit_is_413(serve: Any) -> None:
    url = serve([ensemble("single")], limits=ServeLimits(max_request_bytes=2000))
    with openai_client(url) as oa:
        assert oa.chat.completions.create(model="single", messages=CHAT).choices
        with pytest.raises(openai.APIStatusError) as err:
            oa.chat.completions.create(
                model="single", messages=[{"role": "user", "content": "x" * 5000}]
            )
    assert err.value.status_code == 413
    assert err.value.body["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope", "messages": CHAT}, 404, "model_not_found"),
        ({"model": "single", "messages": []}, 400, "invalid_request"),
        ({"model": "single", "messages": CHAT, "n": 99}, 400, "invalid_n"),
        ({"model": "single", "messages": CHAT, "temperature": "hot"}, 400, "invalid_request"),
        ({"model": "single", "messages": [{"role": "user", "content": 3}]}, 400, "invalid_request"),
    ],
)
def test_bad_requests_get_openai_errors(serve: Any, body: Any, status: int, code: str) -> None:
    url = serve([ensemble("single")])
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert err["type"] == "invalid_request_error"


def test_queue_bound_refuses_with_429_and_retry_after(serve: Any) -> None:
    limits = ServeLimits(max_active=1, max_queued=1, retry_after_s=2)
    url = serve([ensemble("single")], MockClient(delay_s=0.5), limits)

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as c:
            body = {"model": "single", "messages": CHAT}
            return list(
                await asyncio.gather(
                    *(c.post(f"{url}/chat/completions", json=body) for _ in range(6))
                )
            )

    got = asyncio.run(flood())
    codes = sorted(r.status_code for r in got)
    assert codes == [200, 200, 429, 429, 429, 429]
    refused = [r for r in got if r.status_code == 429]
    assert all(r.headers["retry-after"] == "2" for r in refused)
    assert refused[0].json()["error"]["code"] == "queue_full"
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["pending"] == 0
