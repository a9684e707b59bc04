from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from openimpact.auth import AccountDep, current_caller
from openimpact.errors import ValidationFailed
from openimpact.kit import DAY, error_responses, parse_day
from openimpact.stats import service

router = APIRouter(prefix="/v1", dependencies=[Depends(current_caller)])


class Breakdown(BaseModel):
    tree_planted: int
    waste_removed: int
    carbon_captured: int
    coral_restored: int
    money_donated: int


class ImpactTotals(Breakdown):
    user_id: str
    user_impact: Breakdown = Field(description="Impact made directly by the organization")
    customer_impact: Breakdown = Field(description="Impact made on behalf of customers")


class DailyRow(Breakdown):
    date: str = Field(description="YYYY-MM-DD (UTC)")


class DailySeries(BaseModel):
    user_id: str
    daily_impact: list[DailyRow] = Field(description="Days with activity, ascending")


@router.get("/impact", response_model=ImpactTotals, responses=error_responses(401, 429))
async def impact(request: Request, caller: AccountDep) -> JSONResponse:
    """Lifetime totals, excluding cancelled impacts, split between direct and customer impact."""
    return JSONResponse(await request.app.state.db.run(service.totals, caller))


@router.get("/impact/daily", response_model=DailySeries, responses=error_responses(400, 401, 429))
async def impact_daily(
    request: Request,
    caller: AccountDep,
    start_date: Annotated[
        str | None, Query(max_length=10, description="YYYY-MM-DD", json_schema_extra=DAY)
    ] = None,
    end_date: Annotated[
        str | None, Query(max_length=10, description="YYYY-MM-DD", json_schema_extra=DAY)
    ] = None,
) -> JSONResponse:
    """Daily totals per UTC day (inclusive range), excluding cancelled impacts."""
    start = parse_day("start_date", start_date)
    end = parse_day("end_date", end_date)
    if start and end and start > end:
        raise ValidationFailed("start_date: must not be after end_date")
    return JSONResponse(await request.app.state.db.run(service.daily, caller, start, end))
