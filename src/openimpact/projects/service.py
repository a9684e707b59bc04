"""The projects catalogue: partners, projects, SDGs and donation causes.

It ships as ``catalogue.json`` inside the package, is loaded into an empty
database on first start, and is replaced whole by ``openimpact projects import``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openimpact.errors import NotFound, ValidationFailed
from openimpact.projects.models import Cause, Partner, Project, Sdg

CATALOGUE_PATH = Path(__file__).parent / "catalogue.json"
LOCALES = ("en", "de", "es", "fr", "nl")
PROJECT_TYPES = ("trees", "ocean", "carbon", "coral")
_TYPE_KEYS = {
    "trees": "tree_planted",
    "ocean": "waste_removed",
    "carbon": "carbon_captured",
    "coral": "coral_restored",
}


class _SdgIn(BaseModel):
    number: int = Field(ge=1, le=17)
    color: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")
    link: str
    icon_url: str
    title: dict[str, str]
    description: dict[str, str]


class _PartnerIn(BaseModel):
    partner_id: str = Field(min_length=1, max_length=80)
    name: str
    description: str = ""
    website: str | None = None
    logo_url: str | None = None


class _Text(BaseModel):
    name: str | None = None
    location: str | None = None
    description: str | None = None
    about: list[str] | None = None


class _ProjectIn(BaseModel):
    project_id: str = Field(min_length=1, max_length=80)
    type: str
    impact_types: list[str]
    categories: list[str] = []
    live_sessions: bool = False
    partner_id: str
    organization: str
    country_code: str = Field(min_length=2, max_length=2)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    available: bool = True
    image_urls: list[str] = []
    sdgs: list[int] = []
    i18n: dict[str, _Text]

    @model_validator(mode="after")
    def _check(self) -> _ProjectIn:
        if self.type not in PROJECT_TYPES:
            raise ValueError(f"type must be one of {', '.join(PROJECT_TYPES)}")
        en = self.i18n.get("en")
        if en is None or not (en.name and en.location and en.description and en.about):
            raise ValueError("i18n.en needs name, location, description and about")
        return self


class _CauseIn(BaseModel):
    cause: str = Field(min_length=1, max_length=40)
    project_id: str
    label: dict[str, str]


class Catalogue(BaseModel):
    sdgs: list[_SdgIn]
    partners: list[_PartnerIn]
    causes: list[_CauseIn]
    projects: list[_ProjectIn]

    @model_validator(mode="after")
    def _references(self) -> Catalogue:
        partners = {p.partner_id for p in self.partners}
        projects = {p.project_id for p in self.projects}
        sdgs = {s.number for s in self.sdgs}
        for p in self.projects:
            if p.partner_id not in partners:
                raise ValueError(f"project {p.project_id}: unknown partner {p.partner_id}")
            missing = set(p.sdgs) - sdgs
            if missing:
                raise ValueError(f"project {p.project_id}: unknown SDG {sorted(missing)}")
        for c in self.causes:
            if c.project_id not in projects:
                raise ValueError(f"cause {c.cause}: unknown project {c.project_id}")
            if "en" not in c.label:
                raise ValueError(f"cause {c.cause}: needs an en label")
        if not any(c.cause == "trees" for c in self.causes):
            raise ValueError("the catalogue needs the default cause 'trees'")
        return self


def parse_catalogue(raw: Any) -> Catalogue:
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(f"catalogue {where}: {first['msg']}") from None


def load_catalogue_file(path: Path) -> Catalogue:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"catalogue: cannot read {path}: {exc}") from None
    return parse_catalogue(raw)


def import_catalogue(session: Session, catalogue: Catalogue) -> dict[str, int]:
    """Replace the whole catalogue in the caller's transaction.

    Impacts keep their own snapshot of project, partner and location, so a
    project that disappears from the catalogue does not rewrite history.
    """
    for model in (Cause, Project, Partner, Sdg):
        session.execute(delete(model))
    session.add_all(Sdg(**s.model_dump()) for s in catalogue.sdgs)
    session.add_all(Partner(**p.model_dump()) for p in catalogue.partners)
    for position, p in enumerate(catalogue.projects):
        data = p.model_dump()
        data["i18n"] = {
            loc: {k: v for k, v in text.items() if v is not None}
            for loc, text in data["i18n"].items()
        }
        session.add(Project(position=position, **data))
    session.add_all(Cause(**c.model_dump()) for c in catalogue.causes)
    session.flush()
    return {
        "projects": len(catalogue.projects),
        "partners": len(catalogue.partners),
        "causes": len(catalogue.causes),
        "sdgs": len(catalogue.sdgs),
    }


def seed_if_empty(session: Session) -> bool:
    if session.scalar(select(Project.project_id).limit(1)) is not None:
        return False
    import_catalogue(session, load_catalogue_file(CATALOGUE_PATH))
    return True


def known_causes(session: Session) -> set[str]:
    return set(session.scalars(select(Cause.cause)))


def _localized(i18n: dict[str, dict[str, Any]], locale: str, field: str) -> Any:
    # Per-field fallback: a partial translation still shows English for the rest.
    value = i18n.get(locale, {}).get(field)
    return value if value not in (None, "", []) else i18n["en"][field]


def project_view(project: Project, sdgs: dict[int, Sdg], locale: str) -> dict[str, Any]:
    i18n = project.i18n
    return {
        "project_id": project.project_id,
        "name": _localized(i18n, locale, "name"),
        "type": project.type,
        "location": _localized(i18n, locale, "location"),
        "description": _localized(i18n, locale, "description"),
        "about": list(_localized(i18n, locale, "about")),
        "country_code": project.country_code,
        "organization": project.organization,
        "sdgs": [
            {
                "id": f"sdg-{n}",
                "number": n,
                "title": sdgs[n].title.get(locale) or sdgs[n].title["en"],
                "description": sdgs[n].description.get(locale) or sdgs[n].description["en"],
                "color": sdgs[n].color,
                "link": sdgs[n].link,
                "icon_url": sdgs[n].icon_url,
            }
            for n in project.sdgs
            if n in sdgs
        ],
        "image_urls": list(project.image_urls),
        "latitude": project.latitude,
        "longitude": project.longitude,
        "available": project.available,
    }


def _sdg_map(session: Session) -> dict[int, Sdg]:
    return {s.number: s for s in session.scalars(select(Sdg))}


def list_projects(session: Session, type_: str | None, locale: str) -> list[dict[str, Any]]:
    stmt = select(Project).order_by(Project.position, Project.project_id)
    if type_ is not None:
        stmt = stmt.where(Project.type == type_)
    sdgs = _sdg_map(session)
    return [project_view(p, sdgs, locale) for p in session.scalars(stmt)]


def get_project(session: Session, project_id: str, locale: str) -> dict[str, Any]:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project_view(project, _sdg_map(session), locale)
