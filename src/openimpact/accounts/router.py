from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from openimpact.auth import AccountDep, current_caller
from openimpact.kit import error_responses

router = APIRouter(prefix="/v1", dependencies=[Depends(current_caller)])


class WhoAmI(BaseModel):
    user_id: str
    email: str


@router.get("/whoami", response_model=WhoAmI, responses=error_responses(401, 429))
async def whoami(caller: AccountDep) -> WhoAmI:
    """Verify the API key and return the account it belongs to."""
    return WhoAmI(user_id=caller.user_id, email=caller.email)
