"""``serve --demo``: the demo account shows every lifecycle stage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.db import Database
from openimpact.demo import create_demo
from openimpact.impacts.models import Impact
from openimpact.lifecycle.models import ImpactTransition
from openimpact.lifecycle.service import impact_by_tracking_id
from openimpact.migrate import prepare_database


def test_demo_production_impacts_cover_every_stage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    prepare_database(url)
    db = Database(url, pool_size=1)
    try:
        created = create_demo(db)
        assert created is not None
        assert create_demo(db) is None  # only into an empty store

        def stages(session: Session) -> dict[str, Counter[str]]:
            found: dict[str, Counter[str]] = {"production": Counter(), "sandbox": Counter()}
            for env, stage in session.execute(select(Impact.env, Impact.stage)):
                found[env][stage] += 1
            return found

        found = db.run_sync(stages)
        assert found["production"] == Counter(
            {"completed": 3, "transferred": 1, "donation_received": 1, "initiated": 1}
        )
        assert found["sandbox"] == Counter({"initiated": 6})
        actors = db.run_sync(lambda s: set(s.scalars(select(ImpactTransition.actor))))
        assert actors == {"demo"}
        # serve --demo prints this certificate's address.
        shown = db.run_sync(impact_by_tracking_id, created["completed_tracking_id"], "production")
        assert shown.stage == "completed" and shown.certificate_id
    finally:
        db.dispose()
