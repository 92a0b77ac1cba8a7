import pytest

from gateway.auth import presented_key

pytestmark = pytest.mark.no_services


def scope(headers: dict[str, str], query: str = "") -> dict:
    return {"headers": [(k.encode(), v.encode()) for k, v in headers.items()], "query_string": query.encode()}


@pytest.mark.parametrize("headers,query", [
    ({"authorization": "Bearer ck_abc"}, ""),
    ({"authorization": "bearer  ck_abc "}, ""),
    ({"x-api-key": "ck_abc"}, ""),
    ({"x-goog-api-key": "ck_abc"}, ""),
    ({}, "alt=sse&key=ck_abc"),
])
def test_every_sdk_way_of_sending_the_key_is_accepted(headers, query):
    assert presented_key(scope(headers, query)) == "ck_abc"


def test_no_key_means_none():
    assert presented_key(scope({"authorization": "Basic dXNlcg=="})) is None
