"""The projects catalogue: listing, filters, locales and import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openimpact.config import driver_url
from openimpact.projects.service import CATALOGUE_PATH, import_catalogue, parse_catalogue
from tests.factories import Api

CATALOGUE = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


def test_shipped_catalogue_is_complete() -> None:
    catalogue = parse_catalogue(CATALOGUE)
    types = [p.type for p in catalogue.projects]
    assert len(catalogue.projects) >= 8
    assert {"trees", "ocean", "carbon", "coral"} <= set(types)
    assert any("food" in p.categories and p.live_sessions for p in catalogue.projects)
    assert sorted(s.number for s in catalogue.sdgs) == list(range(1, 18))
    for project in catalogue.projects:
        assert project.sdgs and project.image_urls and project.i18n["en"].about
        assert project.i18n["de"].name and project.i18n["de"].about


def test_list_projects_has_the_contract_fields(api: Api) -> None:
    me = api.as_(api.account())
    projects = me.get("/v1/projects").json()["projects"]
    assert len(projects) == len(CATALOGUE["projects"])
    first = projects[0]
    assert set(first) == {
        "project_id",
        "name",
        "type",
        "location",
        "description",
        "about",
        "country_code",
        "organization",
        "sdgs",
        "image_urls",
        "latitude",
        "longitude",
        "available",
    }
    assert isinstance(first["latitude"], float)
    assert isinstance(first["about"], list)
    sdg = first["sdgs"][0]
    assert set(sdg) == {"id", "number", "title", "description", "color", "link", "icon_url"}
    assert isinstance(sdg["number"], int)


@pytest.mark.parametrize("type_", ["trees", "ocean", "carbon", "coral"])
def test_type_filter(api: Api, type_: str) -> None:
    me = api.as_(api.account())
    projects = me.get("/v1/projects", type=type_).json()["projects"]
    assert projects
    assert {p["type"] for p in projects} == {type_}


def test_locale_translates_and_falls_back_per_field(api: Api) -> None:
    me = api.as_(api.account())
    source = CATALOGUE["projects"][0]
    german = me.get(f"/v1/projects/{source['project_id']}", locale="de").json()
    assert german["name"] == source["i18n"]["de"]["name"]
    assert german["about"] == source["i18n"]["de"]["about"]
    dutch = me.get(f"/v1/projects/{source['project_id']}", locale="nl").json()
    assert dutch["name"] == source["i18n"]["nl"]["name"]
    # nl has no "about": English stands in for that field only.
    assert dutch["about"] == source["i18n"]["en"]["about"]


def test_unknown_project_is_404_and_bad_parameters_are_400(api: Api) -> None:
    me = api.as_(api.account())
    missing = me.get("/v1/projects/no-such-project")
    assert missing.status_code == 404
    assert missing.json()["type"] == "not_found"
    assert me.get("/v1/projects", type="forest").status_code == 400
    bad_locale = me.get("/v1/projects", locale="it")
    assert bad_locale.status_code == 400
    assert "locale" in bad_locale.json()["message"]


def test_import_replaces_the_catalogue(tmp_path: Path, database) -> None:  # type: ignore[no-untyped-def]
    from openimpact.db import Database

    db = Database(driver_url(database.url))
    smaller = dict(CATALOGUE)
    kept = [
        p
        for p in CATALOGUE["projects"]
        if p["project_id"] in {c["project_id"] for c in CATALOGUE["causes"]}
    ]
    smaller["projects"] = kept
    try:
        counts = db.run_sync(import_catalogue, parse_catalogue(smaller), write=True)
        assert counts["projects"] == len(kept)
        broken = dict(
            CATALOGUE, causes=[{"cause": "trees", "project_id": "gone", "label": {"en": "x"}}]
        )
        with pytest.raises(Exception, match="unknown project"):
            parse_catalogue(broken)
    finally:
        db.run_sync(import_catalogue, parse_catalogue(CATALOGUE), write=True)
        db.dispose()
