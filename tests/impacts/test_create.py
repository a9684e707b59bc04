"""The five impact POSTs: shapes, absences, validation, customers, causes."""

from __future__ import annotations

import re

import pytest

from tests.factories import Api

ENDPOINTS = {
    "plant_tree": ("tree_planted", 10_000_000),
    "clean_ocean": ("waste_removed", 10_000_000),
    "capture_carbon": ("carbon_captured", 10_000_000),
    "restore_coral": ("coral_restored", 10_000_000),
    "donate_money": ("money_donated", 1_000_000_000),
}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class TestShapes:
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_direct_impact_has_exactly_the_contract_fields(self, api: Api, endpoint: str) -> None:
        me = api.as_(api.account())
        body = me.impact(endpoint, 7)
        key, _ = ENDPOINTS[endpoint]
        assert set(body) == {"user_id", key, "time_utc"}
        assert body[key] == 7
        assert body["user_id"] == me.account.user_id
        assert TIME_RE.match(body["time_utc"])

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_customer_impact_nests_the_customer(self, api: Api, endpoint: str) -> None:
        me = api.as_(api.account())
        body = me.impact(endpoint, 2, customer_email="jane@example.com", customer_name="Jane")
        customer = body["customer"]
        assert set(customer) == {"customer_id", "customer_email", "customer_name"}
        assert customer["customer_email"] == "jane@example.com"
        assert customer["customer_name"] == "Jane"

    def test_category_is_echoed_only_when_given(self, api: Api) -> None:
        me = api.as_(api.account())
        assert me.plant(1, category="food")["category"] == "food"
        assert "category" not in me.plant(1)

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_upper_bound_is_accepted_and_one_more_refused(self, api: Api, endpoint: str) -> None:
        me = api.as_(api.account())
        key, top = ENDPOINTS[endpoint]
        assert me.impact(endpoint, top)[key] == top
        response = me.post(f"/v1/{endpoint}", {"amount": top + 1})
        assert response.status_code == 400
        assert response.json()["message"].startswith("amount:")


class TestIntegers:
    @pytest.mark.parametrize(("sent", "stored"), [(2.0, 2), (1e2, 100), (7, 7)])
    def test_a_whole_number_is_an_integer_however_it_is_written(
        self, api: Api, sent: float, stored: int
    ) -> None:
        """JSON Schema (and /openapi.json) call 2.0 an integer: so does the API."""
        me = api.as_(api.account())
        made = me.impact("plant_tree", sent)  # type: ignore[arg-type]
        assert made["tree_planted"] == stored and isinstance(made["tree_planted"], int)
        total = me.get("/v1/impact").json()["user_impact"]["tree_planted"]
        assert total == stored

    def test_the_same_key_with_2_and_2_0_is_the_same_request(self, api: Api) -> None:
        me = api.as_(api.account())
        first = me.post("/v1/plant_tree", {"amount": 2}, idempotency_key="same")
        again = me.post("/v1/plant_tree", {"amount": 2.0}, idempotency_key="same")
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "amount"),
            ({"amount": 0}, "amount"),
            ({"amount": -3}, "amount"),
            ({"amount": 1.5}, "amount"),
            ({"amount": 2.5}, "amount"),
            ({"amount": "5"}, "amount"),
            ({"amount": True}, "amount"),
            ({"amount": None}, "amount"),
            ({"amount": 2**70}, "amount"),
            ({"amount": 1, "category": "palm"}, "category"),
            ({"amount": 1, "customer_email": "not-an-email"}, "customer_email"),
            ({"amount": 1, "customer_name": "Jane"}, "customer_name"),
            ({"amount": 1, "notify": "yes"}, "notify"),
            ({"amount": 1, "metadata": {"gift": "x"}}, "metadata"),
            ({"amount": 1, "metadata": {"widgetID": "x"}}, "metadata"),
            ({"amount": 1, "metadata": {"k" * 41: "x"}}, "metadata"),
            ({"amount": 1, "metadata": {"k": "v" * 501}}, "metadata"),
            ({"amount": 1, "metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
            ({"amount": 1, "metadata": {"k": 5}}, "metadata"),
            ({"amount": 1, "metadata": ["a"]}, "metadata"),
            ({"amount": 1, "ammount": 1}, "ammount"),
            ({"amount": 1, "customer_email": "a\x00b@example.com"}, "customer_email"),
        ],
    )
    def test_bad_body_is_400_naming_the_field_and_writes_nothing(
        self, api: Api, body: dict, field: str
    ) -> None:
        me = api.as_(api.account())
        response = me.post("/v1/plant_tree", body)
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["type"] == "validation_error"
        assert field in error["message"]
        assert me.get("/v1/impact").json()["tree_planted"] == 0
        assert me.get("/v1/records").json()["user_records"] == []

    def test_body_that_is_not_json_is_400(self, api: Api) -> None:
        me = api.as_(api.account())
        response = me.client.post(
            "/v1/plant_tree",
            content=b"{amount: 5",
            headers=me.headers({"content-type": "application/json"}),
        )
        assert response.status_code == 400
        assert response.json()["type"] == "validation_error"

    def test_metadata_within_limits_is_kept(self, api: Api) -> None:
        me = api.as_(api.account())
        metadata = {f"k{i}": "v" * 500 for i in range(20)}
        me.plant(1, metadata=metadata)
        assert me.get("/v1/records").json()["user_records"][0]["metadata"] == metadata


class TestCustomers:
    def test_one_customer_per_email_whatever_its_case_and_names_update(self, api: Api) -> None:
        me = api.as_(api.account())
        first = me.plant(1, customer_email="Jane@Example.com", customer_name="Jane")
        second = me.plant(1, customer_email="jane@example.COM", customer_name="Jane Doe")
        third = me.plant(1, customer_email="JANE@example.com")
        ids = {b["customer"]["customer_id"] for b in (first, second, third)}
        assert len(ids) == 1
        assert third["customer"]["customer_name"] == "Jane Doe"
        customers = me.get("/v1/customers").json()["customers"]
        assert len(customers) == 1
        assert customers[0]["customer_name"] == "Jane Doe"
        assert customers[0]["onboarded_on"] == first["time_utc"]

    def test_customer_without_name_has_no_name_field(self, api: Api) -> None:
        me = api.as_(api.account())
        body = me.plant(1, customer_email="sam@example.com")
        assert body["customer"] == {
            "customer_id": body["customer"]["customer_id"],
            "customer_email": "sam@example.com",
        }


class TestSandboxAndCauses:
    def test_sandbox_and_production_never_mix(self, api: Api) -> None:
        account = api.account()
        live, test = api.as_(account, "production"), api.as_(account, "sandbox")
        live.plant(5, customer_email="a@example.com")
        test.plant(2)
        assert live.get("/v1/impact").json()["tree_planted"] == 5
        assert test.get("/v1/impact").json()["tree_planted"] == 2
        assert test.get("/v1/customers").json()["customers"] == []
        assert len(test.get("/v1/records").json()["user_records"]) == 1
        assert live.get("/v1/records").json()["user_records"] == []

    def test_donation_cause_must_be_allowed(self, api: Api) -> None:
        me = api.as_(api.account(causes=["trees", "veterans"]))
        assert me.impact("donate_money", 500, category="veterans")["category"] == "veterans"
        refused = me.post("/v1/donate_money", {"amount": 500, "category": "animals"})
        assert refused.status_code == 400
        assert "category" in refused.json()["message"]
        assert "veterans" in refused.json()["message"]
        assert me.get("/v1/impact").json()["money_donated"] == 500
