from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from openimpact.auth import current_caller
from openimpact.kit import error_responses
from openimpact.projects import service

router = APIRouter(prefix="/v1", dependencies=[Depends(current_caller)])

Locale = Annotated[
    Literal["en", "de", "es", "fr", "nl"],
    Query(description="Language of the texts; missing translations fall back to en per field"),
]


class SdgOut(BaseModel):
    id: str
    number: int
    title: str
    description: str
    color: str = Field(description="#RRGGBB, the goal's official colour")
    link: str
    icon_url: str


class ProjectOut(BaseModel):
    project_id: str
    name: str
    type: str = Field(description="trees, ocean, carbon or coral")
    location: str
    description: str
    about: list[str]
    country_code: str
    organization: str
    sdgs: list[SdgOut]
    image_urls: list[str]
    latitude: float
    longitude: float
    available: bool


class ProjectsOut(BaseModel):
    projects: list[ProjectOut]


@router.get("/projects", response_model=ProjectsOut, responses=error_responses(400, 401, 429))
async def projects(
    request: Request,
    type: Annotated[
        Literal["trees", "ocean", "carbon", "coral"] | None, Query(description="Filter by type")
    ] = None,
    locale: Locale = "en",
) -> JSONResponse:
    """The projects that execute impacts."""
    found = await request.app.state.db.run(service.list_projects, type, locale)
    return JSONResponse({"projects": found})


@router.get(
    "/projects/{project_id}",
    response_model=ProjectOut,
    responses=error_responses(400, 401, 404, 429),
)
async def project(
    request: Request,
    project_id: Annotated[str, Path(max_length=80)],
    locale: Locale = "en",
) -> JSONResponse:
    """One project by id."""
    return JSONResponse(await request.app.state.db.run(service.get_project, project_id, locale))
