"""GET /v1/budget: this month's cap, spend and what remains (an extension of v1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from openimpact.auth import AccountDep, current_caller
from openimpact.budgets.service import caller_budget
from openimpact.kit import error_responses

router = APIRouter(
    prefix="/v1", tags=["budget (extension of v1)"], dependencies=[Depends(current_caller)]
)


class BudgetOut(BaseModel):
    month: str = Field(description="The current month (UTC), YYYY-MM")
    monthly_cents: int | None = Field(description="The cap in US cents; null: no budget")
    spent_cents: int | None = Field(description="Spent this month; null without a budget")
    remaining_cents: int | None = Field(description="What the cap still allows")
    projected_cents: int | None = Field(description="This month's pace so far, to its end")
    resets_on: str = Field(description="The first day of the next month")


@router.get("/budget", response_model=BudgetOut, responses=error_responses(401, 429))
async def budget(request: Request, caller: AccountDep) -> Any:
    """The key's environment: a POST that would take the month past `monthly_cents`
    creates nothing and answers 402 `budget_exceeded`."""
    return JSONResponse(await request.app.state.db.run(caller_budget, caller))
