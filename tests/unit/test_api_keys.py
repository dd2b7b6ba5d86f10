"""API keys without a broker: parsing the setting, owners, the 401 rules, the per-key budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import tornado.httputil

from scrapeledger.errors import ConfigError
from scrapeledger.settings import Settings
from ws_edge._auth import Keys, Unauthorized, owner_of_key, presented_key
from ws_edge._limits import KeyBudget

K1, K2 = "k" * 16 + "-one", "k" * 16 + "-two"


def request(uri: str = "/v1/jobs", **headers: str) -> tornado.httputil.HTTPServerRequest:
    return tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", uri, "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1", **headers}))


def test_owners_are_names_or_a_hash_never_the_key() -> None:
    keys = Keys([f"alice:{K1}", K2])
    assert keys.owner(K1) == "alice"
    assert keys.owner(K2) == owner_of_key(K2) != K2 and K2 not in owner_of_key(K2)
    assert owner_of_key(K2) == owner_of_key(K2)  # stable across restarts and pods
    for bad in (None, "", K1[:-1], K1 + "x", "alice"):
        with pytest.raises(Unauthorized):
            keys.owner(bad)


@pytest.mark.parametrize("entries", [[], ["short"], [f"bad name:{K1}"], [K1, K1], [f"a:{K1}", f"a:{K2}"],
                                     [f"{K1} with space"]])
def test_bad_settings_stop_the_edge_without_echoing_a_key(entries: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Keys(entries)
    assert K1 not in str(err.value) and K2 not in str(err.value)


def test_off_unless_a_key_is_set_and_a_file_works_like_the_variable(tmp_path: Path) -> None:
    assert Keys.from_settings(Settings()) is None
    assert Keys.from_settings(Settings(api_keys="")) is None  # compose passes an empty one
    keys = Keys.from_settings(Settings(api_keys=f"alice:{K1},{K2}"))
    assert keys is not None and keys.owner(K2).startswith("key-")
    path = tmp_path / "keys"
    path.write_text(f"# who\nalice:{K1}\n\n{K2}\n")
    from_file = Keys.from_settings(Settings(api_keys_file=str(path)))
    assert from_file is not None and from_file.owner(K1) == "alice"
    with pytest.raises(ConfigError):
        Keys.from_settings(Settings(api_keys_file=str(tmp_path / "missing")))


def test_the_key_rides_in_the_header_or_for_websockets_in_the_query() -> None:
    assert presented_key(request(Authorization=f"Bearer {K1}"), query=False) == K1
    assert presented_key(request(Authorization=f"bearer  {K1} "), query=False) == K1
    assert presented_key(request(Authorization=f"Basic {K1}"), query=False) == ""  # wrong, not missing
    assert presented_key(request(f"/?api_key={K1}"), query=True) == K1
    assert presented_key(request(f"/v1/jobs?api_key={K1}"), query=False) is None  # HTTP: header only
    assert presented_key(request(), query=True) is None


def test_the_key_budget_caps_jobs_in_flight_and_the_submit_rate() -> None:
    now = [0.0]
    budget = KeyBudget(max_in_flight=3, rate=1.0, burst=2, clock=lambda: now[0])
    assert budget.admit("a", 2) is None
    budget.started("a", "j1")
    budget.started("a", "j2")
    budget.settle("a", 2)
    refused = budget.admit("a")
    assert refused is not None and "per second" in refused[0] and refused[1] == pytest.approx(1.0)
    assert budget.admit("b") is None  # another key has its own budget
    now[0] = 1.0
    assert budget.admit("a") is None
    budget.started("a", "j3")
    budget.settle("a")
    now[0] = 10.0
    refused = budget.admit("a")
    assert refused is not None and "in flight" in refused[0]
    budget.finished("j1")
    budget.finished("j1")  # a second delivery of the same result changes nothing
    assert budget.in_flight("a") == 2 and budget.admit("a") is None
    budget.settle("a")
    assert budget.admit("a", 5) is not None  # a batch over the in-flight cap: refused whole
    assert budget.in_flight("a") == 2
