"""API keys: the per-worker key cache never lets a revoked key through.

Writes take the caller from a cache and confirm the key inside their own
transaction (auth.KeyCache, db.guard_transactions); these tests revoke a key
that a worker has just cached and check that the very next request fails.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, Ledger
from openimpact.accounts.service import hash_key, revoke_key
from openimpact.auth import Caller, KeyCache
from openimpact.db import Database
from openimpact.kit import RECORD_KEYS
from tests.factories import AccountKeys, Api


def _revoke(db: Database, key: str) -> None:
    # The visible prefix (oi_live_ + 8 characters) names the key.
    db.run_sync(revoke_key, key[:16], write=True)


def _cache(api: Api) -> KeyCache:
    return api.client.app.state.key_cache  # type: ignore[attr-defined,no-any-return]


IMPACT_POSTS = ["plant_tree", "clean_ocean", "capture_carbon", "restore_coral", "donate_money"]


class TestRevokedKeyFailsAtOnce:
    @pytest.mark.parametrize("endpoint", IMPACT_POSTS)
    def test_a_cached_key_revoked_is_refused_on_the_next_write(
        self, api: Api, endpoint: str
    ) -> None:
        account = api.account()
        me = api.as_(account)
        me.impact(endpoint, 2)
        me.impact(endpoint, 2)  # served from the cache
        _revoke(api.db, account.production_key)

        refused = me.post(f"/v1/{endpoint}", {"amount": 5}, idempotency_key="after-revoke")
        assert refused.status_code == 401
        assert refused.json() == {"type": "key_error", "message": "API Key does not exist"}
        # Nothing of the refused write landed, and the key left the cache.
        assert _cache(api).get(hash_key(account.production_key)) is None
        assert _ledger_total(api, account, IMPACT_POSTS.index(endpoint)) == 4

    def test_a_replay_is_refused_too(self, api: Api) -> None:
        account = api.account()
        me = api.as_(account)
        body = {"amount": 1, "customer_email": "jane@example.com"}
        assert me.post("/v1/plant_tree", body, idempotency_key="order-9").status_code == 200
        _revoke(api.db, account.production_key)
        again = me.post("/v1/plant_tree", body, idempotency_key="order-9")
        assert again.status_code == 401
        assert "Idempotent-Replayed" not in again.headers

    def test_cancel_with_a_revoked_cached_key_cancels_nothing(self, api: Api) -> None:
        account = api.account()
        me = api.as_(account)
        made = me.plant(3)
        _revoke(api.db, account.production_key)
        refused = me.post(
            "/v1/cancel_impact", {"user_id": made["user_id"], "time_utc": made["time_utc"]}
        )
        assert refused.status_code == 401
        assert _ledger_total(api, account, 0) == 3

    def test_reads_always_look_the_key_up(self, api: Api) -> None:
        account = api.account()
        me = api.as_(account)
        me.plant(1)
        assert me.get("/v1/whoami").status_code == 200
        _revoke(api.db, account.production_key)
        assert me.get("/v1/whoami").status_code == 401
        assert me.get("/v1/impact").status_code == 401

    def test_other_keys_of_the_account_keep_working(self, api: Api) -> None:
        account = api.account()
        live, test = api.as_(account), api.as_(account, "sandbox")
        live.plant(1)
        test.plant(1)
        _revoke(api.db, account.sandbox_key)
        assert test.post("/v1/plant_tree", {"amount": 1}).status_code == 401
        assert live.post("/v1/plant_tree", {"amount": 1}).status_code == 200


def _ledger_total(api: Api, account: AccountKeys, kind: int) -> int:
    def read(session: Session) -> int:
        account_id = session.scalar(select(Account.id).where(Account.user_id == account.user_id))
        ledger = session.get(Ledger, (account_id, "production"))
        assert ledger is not None
        return int(getattr(ledger, "user_" + RECORD_KEYS[kind]))

    return api.db.run_sync(read)


class TestKeyCache:
    def test_entries_expire(self) -> None:
        cache = KeyCache(ttl_seconds=-1)
        cache.put(Caller(1, "U1", "a@example.com", "A", "production", "h1"))
        assert cache.get("h1") is None

    def test_the_oldest_entry_makes_room(self) -> None:
        cache = KeyCache(max_entries=2)
        for n in range(3):
            cache.put(Caller(n, f"U{n}", "a@example.com", "A", "production", f"h{n}"))
        assert cache.get("h0") is None
        assert cache.get("h1") is not None and cache.get("h2") is not None
