"""Sealed credentials (scrapeledger.vault): what is sealed, rotation, retired keys, key files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

import ledger
from scrapeledger.errors import ConfigError, CredentialsUnreadableError
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault, ensure_key_file, new_key, read_key_file

JOB = "AbCdEfGhIjKlMnOpQrStUv"
SECRET = "s3cr3t-" + "x" * 12


def test_credential_headers_and_proxy_userinfo_are_sealed_the_rest_stays_clear() -> None:
    vault = Vault([new_key()], secret_headers=["X-Session-Token"])
    headers = {
        "Authorization": f"Bearer {SECRET}a", "cookie": f"sid={SECRET}b",
        "PROXY-AUTHORIZATION": f"Basic {SECRET}c", "X-Api-Key": f"{SECRET}d",
        "x-session-token": f"{SECRET}e", "Accept": "text/html",
    }
    proxy = f"http://user:{SECRET}f@127.0.0.1:3128"
    sealed = vault.seal(JOB, headers, proxy)
    assert sealed.headers == {"Accept": "text/html"}
    assert sealed.proxy == "http://127.0.0.1:3128"
    assert sealed.sealed is not None and SECRET not in sealed.sealed
    assert vault.open(JOB, sealed.headers, sealed.proxy, sealed.sealed) == (headers, proxy)


def test_a_request_without_credentials_is_not_sealed_at_all() -> None:
    vault = Vault([new_key()])
    sealed = vault.seal(JOB, {"Accept": "*/*"}, "http://127.0.0.1:3128")
    assert sealed.sealed is None
    assert vault.open(JOB, sealed.headers, sealed.proxy, None) == ({"Accept": "*/*"}, "http://127.0.0.1:3128")


def test_rotation_new_key_first_old_keys_still_open_and_reseal_moves_to_the_new_key() -> None:
    old, new = new_key(), new_key()
    token = Vault([old]).seal(JOB, {"Authorization": SECRET}, None).sealed
    rotated = Vault([new, old])
    assert rotated.open(JOB, {}, None, token) == ({"Authorization": SECRET}, None)
    resealed = rotated.reseal(JOB, {}, None, token)
    # the old key retired: its tokens are unreadable for good (crypto-shredding), the resealed one opens
    retired = Vault([new])
    with pytest.raises(CredentialsUnreadableError, match="not configured"):
        retired.open(JOB, {}, None, token)
    opened = retired.open(JOB, resealed.headers, resealed.proxy, resealed.sealed)
    assert opened == ({"Authorization": SECRET}, None)


def test_reseal_seals_credentials_found_in_clear() -> None:
    """Events written before sealing existed (v1) carry them in clear: a redrive seals them."""
    vault = Vault([new_key()])
    resealed = vault.reseal(JOB, {"Cookie": SECRET, "Accept": "a"}, f"http://u:{SECRET}@h:1", None)
    assert resealed.headers == {"Accept": "a"} and resealed.proxy == "http://h:1"
    assert resealed.sealed is not None
    assert vault.open(JOB, resealed.headers, resealed.proxy, resealed.sealed) == (
        {"Accept": "a", "Cookie": SECRET}, f"http://u:{SECRET}@h:1",
    )


def test_a_token_opens_only_for_its_own_job() -> None:
    vault = Vault([new_key()])
    token = vault.seal(JOB, {"Authorization": SECRET}, None).sealed
    with pytest.raises(CredentialsUnreadableError, match="another job"):
        vault.open("ZyXwVuTsRqPoNmLkJiHgFe", {}, None, token)
    with pytest.raises(CredentialsUnreadableError):
        vault.open(JOB, {}, None, "not-a-token")


def test_a_bad_key_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as info:
        Vault([new_key(), "hunter2-not-a-fernet-key"])
    assert "key 2" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError):
        Vault([])


def test_settings_read_keys_newest_first_and_mask_them(monkeypatch: pytest.MonkeyPatch) -> None:
    new, old = new_key(), new_key()
    monkeypatch.setenv("SCRAPELEDGER_SECRET_KEYS", f"{new}, {old}")
    monkeypatch.setenv("SCRAPELEDGER_SECRET_HEADERS", "X-A, x-b")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.secret_keys] == [new, old]
    assert new not in repr(settings) and old not in repr(settings)
    vault = Vault.from_settings(settings)
    assert vault.is_secret("x-a") and vault.is_secret("X-B") and vault.is_secret("authorization")
    token = Vault([old], secret_headers=["x-a"]).seal(JOB, {"X-A": SECRET}, None).sealed
    assert vault.open(JOB, {}, None, token) == ({"X-A": SECRET}, None)


def test_a_key_file_from_settings(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{key}\n\n")
    vault = Vault.from_settings(Settings(secret_keys_file=str(path)))
    token = Vault([key]).seal(JOB, {"Cookie": "c"}, None).sealed
    assert vault.open(JOB, {}, None, token)[0] == {"Cookie": "c"}
    with pytest.raises(ConfigError, match="does not exist"):  # a configured file is never invented
        Vault.from_settings(Settings(secret_keys_file=str(tmp_path / "missing")))


def test_without_configuration_every_local_process_shares_one_generated_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRAPELEDGER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SCRAPELEDGER_SECRET_KEYS", raising=False)
    monkeypatch.delenv("SCRAPELEDGER_SECRET_KEYS_FILE", raising=False)
    first = Vault.from_settings(Settings())
    path = tmp_path / "secret-keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = first.seal(JOB, {"Authorization": SECRET}, None).sealed
    assert Vault.from_settings(Settings()).open(JOB, {}, None, token) == ({"Authorization": SECRET}, None)


def test_concurrent_creators_of_a_key_file_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k" / "secret-keys"
    created: list[bool] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        created.append(ensure_key_file(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1
    assert len(read_key_file(path)) == 1
    assert os.listdir(path.parent) == ["secret-keys"]  # no temporary file left behind


def test_v1_fetch_events_read_as_v2_without_sealed_credentials() -> None:
    wire = {"type": "JobSubmitted", "v": 1, "event_id": "e", "job_id": JOB, "at": 1.0, "source": "s",
            "attempt": 0, "payload": {"url": "http://x/", "headers": {}, "timeout_s": None, "proxy": None}}
    event = ledger.decode_event(orjson.dumps(wire))
    assert isinstance(event, ledger.JobSubmitted) and event.sealed is None
    assert ledger.event_to_dict(event)["v"] == 2


def test_the_fold_keeps_the_token_and_an_expiry_drops_it() -> None:
    token = Vault([new_key()]).seal(JOB, {"Authorization": SECRET}, None).sealed
    state = ledger.fold(None, ledger.JobSubmitted(job_id=JOB, event_id="s", at=1.0, source="e", url="http://x/",
                                        sealed=token))
    assert state.sealed == token
    assert ledger.JobState.from_json(state.to_json()) == state
    expired = ledger.fold(state, ledger.JobExpired(job_id=JOB, event_id="x", at=2.0, source="r"))
    assert expired.sealed is None


def test_settings_key_env_accepts_secretstr() -> None:
    key = new_key()
    assert Settings(secret_keys=[SecretStr(key)]).secret_keys[0].get_secret_value() == key
