"""Which project (and so which partner) executes an impact.

Chosen at Transfer to Partner, in this order (the first that applies wins):

1. the project the operator names for the batch;
2. the account's override for ``<type>:<category>`` (``tree_planted:food``,
   ``money_donated:veterans``), then for ``<type>`` (``tree_planted``);
3. food trees: an available food-tree project, preferring one with live
   planting sessions (seed 000: food tree certificates link a live session);
4. donations: the project of the cause the donation funds;
5. the first available project, in catalogue order, that executes the impact
   type and is not reserved for a category; then any that executes it.

An override is only used while its project still exists and can execute the
impact (a food tree override must name a food-tree project); otherwise the
rules below it apply, so a catalogue import never strands impacts.

The impact keeps a snapshot of what was chosen (``assigned_agent``,
``project_location``, ``location_map``): later catalogue edits do not rewrite
history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.errors import NotFound, ValidationFailed
from openimpact.kit import RECORD_KEYS
from openimpact.projects.models import Cause, Partner, Project

FOOD = "food"


def location_map_url(latitude: float, longitude: float) -> str:
    """A Google Maps embed URL (an iframe ``src``) that needs no API key."""
    return f"https://maps.google.com/maps?q={latitude!r},{longitude!r}&z=10&output=embed"


@dataclass(frozen=True, slots=True)
class Assignment:
    project_id: str
    partner_id: str | None
    assigned_agent: str
    project_location: str
    location_map: str
    live_sessions: bool

    def values(self) -> dict[str, str | None]:
        """The impact columns this assignment sets."""
        return {
            "project_id": self.project_id,
            "partner_id": self.partner_id,
            "assigned_agent": self.assigned_agent,
            "project_location": self.project_location,
            "location_map": self.location_map,
        }


def _executes(project: Project, impact_type: str, category: str | None) -> bool:
    if impact_type not in project.impact_types:
        return False
    return not (
        impact_type == "tree_planted" and category == FOOD and FOOD not in project.categories
    )


class Assigner:
    """Resolves assignments for one batch; reads the catalogue once."""

    def __init__(self, session: Session, project_id: str | None = None) -> None:
        self.session = session
        self.projects = list(
            session.scalars(select(Project).order_by(Project.position, Project.project_id))
        )
        self.by_id = {p.project_id: p for p in self.projects}
        self.partners = {p.partner_id: p for p in session.scalars(select(Partner))}
        self.cause_projects = dict(session.execute(select(Cause.cause, Cause.project_id)).all())
        self._overrides: dict[int, dict[str, str]] = {}
        self._cache: dict[tuple[int, str, str | None, str | None], Assignment] = {}
        self.explicit: Project | None = None
        if project_id is not None:
            explicit = self.by_id.get(project_id)
            if explicit is None:
                raise ValidationFailed(f"project_id: no project with id {project_id}")
            self.explicit = explicit

    def check_explicit(self, impact_type: str, category: str | None) -> None:
        """The named project must be able to execute every selected impact."""
        if self.explicit is not None and not _executes(self.explicit, impact_type, category):
            what = "food tree" if category == FOOD else impact_type
            raise ValidationFailed(
                f"project_id: project {self.explicit.project_id} does not execute {what} "
                f"impacts (it executes {', '.join(self.explicit.impact_types)}"
                + (
                    f"; categories {', '.join(self.explicit.categories)}"
                    if self.explicit.categories
                    else ""
                )
                + ")"
            )

    def _account_overrides(self, account_id: int) -> dict[str, str]:
        if account_id not in self._overrides:
            found = self.session.scalar(
                select(Account.project_overrides).where(Account.id == account_id)
            )
            self._overrides[account_id] = dict(found or {})
        return self._overrides[account_id]

    def assign(
        self, account_id: int, impact_type: str, category: str | None, cause: str | None
    ) -> Assignment:
        key = (account_id, impact_type, category, cause)
        found = self._cache.get(key)
        if found is None:
            found = self._snapshot(self._choose(account_id, impact_type, category, cause))
            self._cache[key] = found
        return found

    def _choose(
        self, account_id: int, impact_type: str, category: str | None, cause: str | None
    ) -> Project:
        if self.explicit is not None:
            self.check_explicit(impact_type, category)
            return self.explicit
        detail = cause if impact_type == "money_donated" else category
        overrides = self._account_overrides(account_id)
        keys = ([f"{impact_type}:{detail}"] if detail else []) + [impact_type]
        for override_key in keys:
            project = self.by_id.get(overrides.get(override_key, ""))
            if project is not None and _executes(project, impact_type, category):
                return project
        available = [p for p in self.projects if p.available]
        if impact_type == "tree_planted" and category == FOOD:
            food = [p for p in available if _executes(p, impact_type, FOOD)]
            food.sort(key=lambda p: not p.live_sessions)  # stable: catalogue order otherwise
            if food:
                return food[0]
        if impact_type == "money_donated" and cause is not None:
            project = self.by_id.get(self.cause_projects.get(cause, ""))
            if project is not None:
                return project
        executing = [p for p in available if impact_type in p.impact_types]
        general = [p for p in executing if not p.categories]
        if general or executing:
            return (general or executing)[0]
        raise ValidationFailed(
            f"no available project executes {impact_type} impacts; add one to the catalogue "
            "or name a project_id"
        )

    def _snapshot(self, project: Project) -> Assignment:
        partner = self.partners.get(project.partner_id or "")
        location = project.i18n["en"]["location"]
        return Assignment(
            project_id=project.project_id,
            partner_id=project.partner_id,
            assigned_agent=partner.name if partner is not None else project.organization,
            # The contract's example: "Rwenzori Mountains, Uganda with Dream International."
            project_location=f"{location} with {project.organization}.",
            location_map=location_map_url(project.latitude, project.longitude),
            live_sessions=project.live_sessions,
        )


# Per-account overrides ---------------------------------------------------------------


def override_keys(session: Session) -> list[str]:
    """Every key an override may use: each impact type, ``tree_planted:food``
    and ``money_donated:<cause>`` for each cause in the catalogue."""
    causes = sorted(session.scalars(select(Cause.cause)))
    return [*RECORD_KEYS, "tree_planted:food", *(f"money_donated:{c}" for c in causes)]


def validate_overrides(session: Session, overrides: dict[str, str]) -> dict[str, str]:
    allowed = override_keys(session)
    projects = {p.project_id: p for p in session.scalars(select(Project))}
    clean: dict[str, str] = {}
    for key, project_id in overrides.items():
        if key not in allowed:
            raise ValidationFailed(
                f"project_overrides: unknown key '{key[:60]}'; use an impact type "
                "(tree_planted, ...), tree_planted:food or money_donated:<cause>"
            )
        project = projects.get(project_id)
        if project is None:
            raise ValidationFailed(f"project_overrides.{key}: no project with id {project_id[:80]}")
        impact_type = key.partition(":")[0]
        category = FOOD if key == "tree_planted:food" else None
        if not _executes(project, impact_type, category):
            what = "food tree" if category else impact_type
            raise ValidationFailed(
                f"project_overrides.{key}: project {project_id} does not execute {what} impacts"
            )
        clean[key] = project_id
    return dict(sorted(clean.items()))


def get_overrides(session: Session, user_id: str) -> dict[str, str]:
    account = session.scalar(select(Account).where(Account.user_id == user_id))
    if account is None:
        raise NotFound(f"no account with user_id {user_id}")
    return dict(sorted((account.project_overrides or {}).items()))


def set_overrides(
    session: Session,
    user_id: str,
    overrides: dict[str, str],
    *,
    replace: bool = True,
    unset: tuple[str, ...] = (),
) -> dict[str, str]:
    """Replace (or, with ``replace=False``, merge into) an account's overrides."""
    account = session.scalar(select(Account).where(Account.user_id == user_id))
    if account is None:
        raise NotFound(f"no account with user_id {user_id}")
    merged = {} if replace else dict(account.project_overrides or {})
    for key in unset:
        merged.pop(key, None)
    merged.update(overrides)
    account.project_overrides = validate_overrides(session, merged)
    session.flush()
    return dict(account.project_overrides)
