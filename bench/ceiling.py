"""The ceiling: the same stack with no database.

A bare FastAPI app whose POST /v1/plant_tree validates the very body model of
the real endpoint (including the ``x-api-key`` and ``Idempotency-Key``
headers being read) and answers the same JSON shape, without touching a
database. Served by the same uvicorn settings and loaded by the same generator
as the real server, it is what "as fast as this stack can go on this machine,
right now" means; every write figure is reported as a ratio to it.

Its GET /public/v1/profiles/{slug} is the ceiling of the public reads: a path
parameter read and a profile-shaped JSON answer with the same caching headers,
from memory.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from openimpact.errors import install_error_handlers
from openimpact.impacts.schemas import PlantTreeRequest
from openimpact.timeutil import ms_to_iso


def create_app() -> FastAPI:
    app = FastAPI(title="OpenImpact bench ceiling")
    install_error_handlers(app)

    @app.post("/v1/plant_tree")
    async def plant_tree(
        body: PlantTreeRequest,
        x_api_key: Annotated[str, Header()],
        key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        out: dict[str, object] = {
            "user_id": "U1000000000",
            "tree_planted": body.amount,
            "time_utc": ms_to_iso(time.time_ns() // 1_000_000),
        }
        if body.customer_email is not None:
            out["customer"] = {"customer_id": "C0", "customer_email": body.customer_email}
        return JSONResponse(out)

    profile = {
        "slug": "bench",
        "name": "Bench shop",
        "logo_url": None,
        "profile_url": "http://127.0.0.1/impact/bench",
        "totals": {
            "tree_planted": 1234,
            "waste_removed": 56,
            "carbon_captured": 789,
            "coral_restored": 10,
            "money_donated": 123456,
        },
        "units": {
            "tree_planted": "trees",
            "waste_removed": "lbs",
            "carbon_captured": "lbs CO₂",
            "coral_restored": "coral fragments",
            "money_donated": "US cents",
        },
    }

    @app.get("/public/v1/profiles/{slug}")
    async def public_profile(slug: str) -> JSONResponse:
        return JSONResponse(
            {**profile, "slug": slug},
            headers={"Cache-Control": "public, max-age=60", "Access-Control-Allow-Origin": "*"},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
