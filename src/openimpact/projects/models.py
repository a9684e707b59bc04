from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base


class Partner(Base):
    """An organization that executes impacts on the ground."""

    __tablename__ = "partners"

    partner_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    website: Mapped[str | None] = mapped_column(String(500))
    logo_url: Mapped[str | None] = mapped_column(String(500))


class Project(Base):
    __tablename__ = "projects"

    project_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    impact_types: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    live_sessions: Mapped[bool] = mapped_column(Boolean, default=False)
    partner_id: Mapped[str | None] = mapped_column(String(80))
    organization: Mapped[str] = mapped_column(String(200))
    country_code: Mapped[str] = mapped_column(String(2))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    image_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    sdgs: Mapped[list[int]] = mapped_column(JSON, default=list)
    # {"en": {"name", "location", "description", "about": [...]}, "de": {...}}
    i18n: Mapped[dict[str, Any]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Sdg(Base):
    __tablename__ = "sdgs"

    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    color: Mapped[str] = mapped_column(String(7))
    link: Mapped[str] = mapped_column(String(500))
    icon_url: Mapped[str] = mapped_column(String(500))
    title: Mapped[dict[str, str]] = mapped_column(JSON)
    description: Mapped[dict[str, str]] = mapped_column(JSON)


class Cause(Base):
    """A cause donations can fund, and the project that executes it."""

    __tablename__ = "causes"

    cause: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(80))
    label: Mapped[dict[str, str]] = mapped_column(JSON)
