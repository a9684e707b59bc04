from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from openimpact.auth import AccountDep, current_caller
from openimpact.customers.service import list_customers
from openimpact.kit import email_from_query, error_responses

router = APIRouter(prefix="/v1", dependencies=[Depends(current_caller)])


class CustomerItem(BaseModel):
    customer_id: str
    customer_email: str
    customer_name: str | None = None
    onboarded_on: str = Field(description="When their first impact was recorded")


class CustomersPage(BaseModel):
    customers: list[CustomerItem]
    cursor: str | None = Field(default=None, description="Present only when another page exists")


@router.get("/customers", response_model=CustomersPage, responses=error_responses(400, 401, 429))
async def customers(
    request: Request,
    caller: AccountDep,
    customer_email: Annotated[str | None, Query(max_length=254)] = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 10,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    sort_order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> JSONResponse:
    """Customers onboarded by impacts made on their behalf, by `onboarded_on`."""
    found, next_cursor = await request.app.state.db.run(
        list_customers,
        caller,
        email_from_query(customer_email) or None,
        limit,
        cursor or None,
        sort_order == "desc",
        request.app.state.cursor_codec,
    )
    body: dict[str, Any] = {"customers": found}
    if next_cursor is not None:
        body["cursor"] = next_cursor
    return JSONResponse(body)
