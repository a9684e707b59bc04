"""The demo account of ``openimpact serve --demo``: a small shop's last ninety
days, so that every page has something true to show.

Everything goes through the real write path, in the order it would have
happened, so the totals equal the records and the daily series adds up:

    record_impact(now=<then>)       every impact, oldest first (time_utc ascends)
    then, in time order:
      advance(stamp=<then>)         the operator's receive / transfer / complete batches
      cancel_impact(now=<then>)     refunds, hours after the order
    and for what comes next: two monthly schedules from this month on, the
    Growth plan's bonuses, unit prices and a monthly budget (the worker's first
    pass creates what is already due)

Production impacts move on a realistic schedule: days between stages, and the
operator reporting each stage in weekday batches, so impacts that reached a
stage together share its time. Sandbox impacts are only recorded (and a few
refunded at once): their compressed schedule (lifecycle/sandbox.py) completes
them on the first worker pass or track call.

A seeded ``random.Random`` makes the demo the same every time, relative to
the moment it is created.
"""

from __future__ import annotations

import random
import secrets
import string
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import BigInteger, literal, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.accounts.service import create_account
from openimpact.auth import Caller
from openimpact.budgets import service as budgets
from openimpact.config import get_settings
from openimpact.db import Database
from openimpact.impacts.models import Impact
from openimpact.impacts.service import NewImpact, cancel_impact, record_impact
from openimpact.lifecycle.assignment import Assigner
from openimpact.lifecycle.service import STEPS, CompleteOptions, advance
from openimpact.plans import service as plans
from openimpact.plans.models import Plan
from openimpact.public import service as public
from openimpact.schedules import service as schedules
from openimpact.schedules.schemas import ScheduleCreate
from openimpact.timeutil import MS_PER_DAY, day_start_ms, ms_to_datetime, ms_to_iso, now_ms
from openimpact.users import service as users

ACTOR = "demo"
_SEED = 1_000_000_000_001
_DAYS = 90
_SANDBOX_DAYS = 30
_MINUTE = 60_000
_HOUR = 60 * _MINUTE

# Causes the demo account may fund (projects/catalogue.json); the first is
# the default of a donation that names none.
_CAUSES = ["trees", "ocean", "climate", "coral", "veterans", "animals"]

_CUSTOMERS = [
    ("Jane Doe", "jane.doe@example.com"),
    ("Samuel Lee", "samuel.lee@example.com"),
    ("Priya Patel", "priya.patel@example.org"),
    ("Marcus Johnson", "marcus.johnson@example.com"),
    ("Emily Chen", "emily.chen@example.com"),
    ("Lucas Martin", "lucas.martin@example.org"),
    ("Sofia Rossi", "sofia.rossi@example.com"),
    ("Daniel Kim", "daniel.kim@example.com"),
    ("Olivia Brown", "olivia.brown@example.org"),
    ("Noah Wilson", "noah.wilson@example.com"),
    ("Aisha Khan", "aisha.khan@example.com"),
    ("Mateo García", "mateo.garcia@example.org"),
    ("Hannah Schmidt", "hannah.schmidt@example.com"),
    ("Ethan Davis", "ethan.davis@example.com"),
    ("Chloé Dubois", "chloe.dubois@example.org"),
    ("Liam O'Connor", "liam.oconnor@example.com"),
    ("Yuki Tanaka", "yuki.tanaka@example.com"),
    ("Grace Mensah", "grace.mensah@example.org"),
    ("Benjamin Clarke", "ben.clarke@example.com"),
    ("Isabella Silva", "isabella.silva@example.com"),
    ("Omar Haddad", "omar.haddad@example.org"),
    ("Mia Johansson", "mia.johansson@example.com"),
    ("Jakub Nowak", "jakub.nowak@example.com"),
    ("Zoe Taylor", "zoe.taylor@example.org"),
    ("Arjun Mehta", "arjun.mehta@example.com"),
    ("Lena Fischer", "lena.fischer@example.com"),
    ("Gabriel Costa", "gabriel.costa@example.org"),
    ("Amelia Wright", "amelia.wright@example.com"),
    ("Kwame Boateng", "kwame.boateng@example.com"),
    ("Nora Lindqvist", "nora.lindqvist@example.org"),
    ("Diego Hernández", "diego.hernandez@example.com"),
    ("Freya Jensen", "freya.jensen@example.com"),
    ("Ravi Shankar", "ravi.shankar@example.org"),
    ("Ella Murphy", "ella.murphy@example.com"),
    ("Tomáš Novák", "tomas.novak@example.com"),
    ("Sara Cohen", "sara.cohen@example.org"),
    ("Victor Almeida", "victor.almeida@example.com"),
    ("Maya Singh", "maya.singh@example.com"),
    ("Henry Walker", "henry.walker@example.org"),
    ("Inès Moreau", "ines.moreau@example.com"),
]
# The first few are regulars, so a customer's page has a long history to show.
_CUSTOMER_WEIGHTS = [6, 5, 4, 3] + [1] * (len(_CUSTOMERS) - 4)

_TYPES = ["tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"]
_TYPE_WEIGHTS = [45, 20, 15, 10, 10]
_AMOUNTS = {
    "tree_planted": [1, 1, 1, 2, 2, 3, 5, 5, 10],  # trees
    "waste_removed": [1, 2, 2, 5, 5, 10, 20],  # lbs of ocean plastic
    "carbon_captured": [10, 25, 25, 50, 100, 250],  # lbs of CO2
    "coral_restored": [1, 1, 2, 3, 5],  # coral fragments
    "money_donated": [100, 200, 250, 500, 500, 1000, 2500],  # US cents
}
# UTC hours of a shop selling in Europe and the Americas: quiet at night.
_HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 8, 7, 5, 3, 2]
_SHOPS = ["shopify", "shopify", "shopify", "woocommerce"]
_CAMPAIGNS = [{"campaign": "earth-month"}, {"source": "api"}, {"source": "subscription"}]

# Days from reaching one stage to the operator's report of the next (seed 000:
# donations arrive within days, partners execute within weeks).
_STAGE_DELAYS_DAYS = {"receive": (1, 4), "transfer": (3, 10), "complete": (10, 30)}
# The operator's routine: donations are booked every weekday morning, money
# goes to partners on Tuesdays and Thursdays, and partners' completion reports
# are entered on Wednesdays and Fridays (weekday numbers, UTC hour).
_BATCHES = {
    "receive": ((0, 1, 2, 3, 4), 9),
    "transfer": ((1, 3), 14),
    "complete": ((2, 4), 16),
}
_REFUND_SHARE = 0.03
_REFUND_REASONS = [
    "Order refunded",
    "Order refunded",
    "Order cancelled by customer",
    "Duplicate order",
]
# Partners send a completion video with some of their reports.
_VIDEO_SHARE = 0.4
_YOUTUBE_ID = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True, slots=True)
class _Planned:
    at_ms: int
    new: NewImpact


DEMO_USER_EMAIL = "demo@openimpact.local"
DEMO_SLUG = "demo-shop"


def create_demo(db: Database, *, stage_seconds: int | None = None) -> dict[str, Any] | None:
    """Create the demo account unless the store already has an account.

    ``stage_seconds`` is the sandbox schedule (the configured one by default):
    sandbox refunds happen before its first stage, while still cancellable.
    """
    if stage_seconds is None:
        stage_seconds = get_settings().sandbox_stage_seconds

    def create(session: Session) -> dict[str, Any] | None:
        if session.scalar(select(Account.id).limit(1)) is not None:
            return None
        now = now_ms()
        rng = random.Random(_SEED)
        account, keys = create_account(
            session, email="demo@openimpact.local", name="Demo Shop", causes=list(_CAUSES)
        )

        def caller(env: str) -> Caller:
            return Caller(account.id, account.user_id, account.email, account.name, env, "")

        production = caller("production")
        for planned in _production_plan(rng, now):
            record_impact(session, production, planned.new, now=planned.at_ms)
        _run_history(session, rng, production, now)

        sandbox = caller("sandbox")
        for planned in _sandbox_plan(rng, now):
            record_impact(session, sandbox, planned.new, now=planned.at_ms)
        _refund_sandbox(session, rng, sandbox, stage_seconds)

        showcase = _showcase(session, production)
        # The dashboard's sign-in: an owner with a password made for this store.
        password = secrets.token_urlsafe(12)
        users.add_user(session, account, DEMO_USER_EMAIL, "owner", password)
        # The public profile, widget and badges have something to show at once.
        public.update_profile(session, account.id, slug=DEMO_SLUG, enabled=True)
        _recurring(session, account, production, now)
        return {
            "profile_slug": DEMO_SLUG,
            "dashboard_email": DEMO_USER_EMAIL,
            "dashboard_password": password,
            "user_id": account.user_id,
            "sandbox_key": keys["sandbox"].key,
            "production_key": keys["production"].key,
            "completed_tracking_id": f"{account.user_id}-{ms_to_iso(showcase)}",
        }

    return db.run_sync(create, write=True)


def _recurring(session: Session, account: Account, production: Caller, now: int) -> None:
    """Two monthly schedules from this month on, the Growth plan's bonuses, unit
    prices and a monthly budget: the worker's first pass creates what is due."""
    month_start = ms_to_datetime(now).date().replace(day=1).isoformat()
    for body in (
        {"impact_type": "tree_planted", "amount": 100, "day_of_month": 1},
        {
            "impact_type": "money_donated",
            "amount": 2000,
            "day_of_month": 15,
            "category": _CAUSES[0],
            "customer_email": "ana.silva@example.com",
            "customer_name": "Ana Silva",
            "metadata": {"subscription": "monthly-giving"},
        },
    ):
        schedules.create_schedule(
            session, production, ScheduleCreate.model_validate({**body, "starts_on": month_start})
        )
    if session.scalar(select(Plan.id).where(Plan.name_key == "growth")) is None:
        plans.create_plan(session, "Growth", {"tree_planted": 50, "waste_removed": 10})
    plans.assign_plan(session, account, "Growth")
    budgets.set_prices(
        session,
        {"tree_planted": 40, "waste_removed": 25, "carbon_captured": 2, "coral_restored": 300},
    )
    budgets.set_budget(session, account.id, "production", 75_000, now)


# What happened -----------------------------------------------------------------------------


def _production_plan(rng: random.Random, now: int) -> list[_Planned]:
    today = ms_to_datetime(now).date()
    planned: list[_Planned] = []
    order = 10_000
    for back in range(_DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        growth = 1 - back / (_DAYS - 1)  # the shop grows over the quarter
        mean = 4.5 if day.weekday() >= 5 else 7 + 3 * growth
        count = min(12, max(4, round(rng.gauss(mean, 1.5))))
        for at in sorted(_moment(rng, day) for _ in range(count)):
            order += rng.randint(1, 3)  # not every order comes with an impact
            new = _production_impact(rng, f"ORD-{order}")
            # Today's plan runs to midnight; only what already happened is kept.
            if at < now - 5 * _MINUTE:
                planned.append(_Planned(at, new))
    return planned


def _production_impact(rng: random.Random, order_id: str) -> NewImpact:
    impact_type = rng.choices(_TYPES, _TYPE_WEIGHTS)[0]
    on_behalf = rng.random() < 0.5
    name, email = rng.choices(_CUSTOMERS, _CUSTOMER_WEIGHTS)[0] if on_behalf else (None, None)
    amount = rng.choice(_AMOUNTS[impact_type])
    category = None
    if impact_type == "tree_planted" and rng.random() < 0.2:
        category = "food"
    elif impact_type == "money_donated" and rng.random() < 0.4:
        category = rng.choice(_CAUSES[1:])
    metadata: dict[str, str] | None = None
    # Guest checkouts are orders too, without a customer to credit.
    if on_behalf or rng.random() < 0.5:
        metadata = {"order_id": order_id, "source": rng.choice(_SHOPS)}
    elif rng.random() < 0.5:
        metadata = dict(rng.choice(_CAMPAIGNS))
        amount *= 5  # the shop's own pledges are larger than one order's
    # notify=False: the customers are made up, so no email goes out for them.
    return NewImpact(impact_type, amount, category, email, name, False, metadata)


def _sandbox_plan(rng: random.Random, now: int) -> list[_Planned]:
    """An integrator's test calls: a few a day, in working hours."""
    today = ms_to_datetime(now).date()
    planned: list[_Planned] = []
    for back in range(_SANDBOX_DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        count = rng.choice((1, 1, 2, 2, 3))
        for number in range(count):
            at = day_start_ms(day) + rng.randint(8 * _HOUR, 18 * _HOUR)
            impact_type = rng.choice(_TYPES)
            name, email = rng.choice(_CUSTOMERS[:8]) if rng.random() < 0.5 else (None, None)
            category = "food" if impact_type == "tree_planted" and rng.random() < 0.3 else None
            metadata = {"order_id": f"TEST-{day:%m%d}-{number + 1}", "source": "shopify"}
            new = NewImpact(
                impact_type,
                rng.choice(_AMOUNTS[impact_type]),
                category,
                email,
                name,
                None,
                metadata,
            )
            if at < now - 5 * _MINUTE:
                planned.append(_Planned(at, new))
    planned.sort(key=lambda p: p.at_ms)
    return planned


def _moment(rng: random.Random, day: date) -> int:
    hour = rng.choices(range(24), _HOUR_WEIGHTS)[0]
    return day_start_ms(day) + hour * _HOUR + rng.randrange(_HOUR)


# The lifecycle -------------------------------------------------------------------------------


class _Operator:
    """When the operator reported each stage: one batch per stage and day."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stamps: dict[tuple[str, date], int] = {}

    def next_batch(self, action: str, after_ms: int) -> int:
        weekdays = _BATCHES[action][0]
        day = ms_to_datetime(after_ms).date()
        while True:
            if day.weekday() in weekdays:
                stamp = self._stamp(action, day)
                if stamp >= after_ms:
                    return stamp
            day += timedelta(days=1)

    def _stamp(self, action: str, day: date) -> int:
        key = (action, day)
        if key not in self.stamps:
            minutes = self.rng.randrange(60)
            self.stamps[key] = day_start_ms(day) + _BATCHES[action][1] * _HOUR + minutes * _MINUTE
        return self.stamps[key]


def _run_history(session: Session, rng: random.Random, caller: Caller, now: int) -> None:
    """Replay the operator's batches and the refunds in the order they happened.

    A refund stops an impact for good: ``advance`` skips cancelled impacts, so
    the batches after it simply leave it where it was.
    """
    operator = _Operator(rng)
    batches: dict[tuple[int, str], list[int]] = defaultdict(list)
    refunds: list[tuple[int, int]] = []
    impacts = session.execute(
        select(Impact.id, Impact.time_ms)
        .where(Impact.account_id == caller.account_id, Impact.env == caller.env)
        .order_by(Impact.time_ms)
    ).all()
    for impact_id, time_ms in impacts:
        reached = time_ms
        for action, (low, high) in _STAGE_DELAYS_DAYS.items():
            due = reached + round(rng.uniform(low, high) * MS_PER_DAY)
            reached = operator.next_batch(action, due)
            if reached > now:
                break
            batches[(reached, action)].append(impact_id)
        # Refunds come within two days, always before the transfer to the
        # partner (at least three days after the donation arrived).
        if rng.random() < _REFUND_SHARE:
            refunded = time_ms + rng.randint(2 * _HOUR, 48 * _HOUR)
            if refunded < now:
                refunds.append((refunded, time_ms))

    events: list[tuple[int, str, Any]] = [
        (at, action, ids) for (at, action), ids in batches.items()
    ]
    events += [(at, "cancel", time_ms) for at, time_ms in refunds]
    assigner = Assigner(session)
    for at, action, what in sorted(events, key=lambda event: event[:2]):
        if action == "cancel":
            cancel_impact(
                session,
                caller,
                caller.user_id,
                ms_to_iso(what),
                rng.choice(_REFUND_REASONS),
                now=at,
            )
        elif action == "complete":
            _complete(session, rng, at, what)
        else:
            advance(
                session,
                STEPS[action],
                what,
                stamp=literal(at, BigInteger),
                actor=ACTOR,
                batch_id=_batch_id(rng, action, at),
                assigner=assigner,
            )


def _complete(session: Session, rng: random.Random, at: int, ids: list[int]) -> None:
    """Some partners' reports come with a video of their project, completed
    as a batch of its own; the rest are completed together. Food trees get
    their live planting session from ``advance`` (the next Saturday)."""
    by_project: dict[str | None, list[int]] = defaultdict(list)
    for impact_id, project_id in session.execute(
        select(Impact.id, Impact.project_id).where(Impact.id.in_(ids)).order_by(Impact.id)
    ):
        by_project[project_id].append(impact_id)
    batches: list[tuple[list[int], str | None]] = [([], None)]
    for project_ids in by_project.values():
        if rng.random() < _VIDEO_SHARE:
            batches.append((project_ids, _video(rng)))
        else:
            batches[0][0].extend(project_ids)
    for batch_ids, video in batches:
        advance(
            session,
            STEPS["complete"],
            batch_ids,
            stamp=literal(at, BigInteger),
            actor=ACTOR,
            batch_id=_batch_id(rng, "complete", at),
            options=CompleteOptions(impact_video=video),
        )


def _refund_sandbox(
    session: Session, rng: random.Random, caller: Caller, stage_seconds: int
) -> None:
    """An integrator trying the refund flow: cancelled within the first stage."""
    times = session.scalars(
        select(Impact.time_ms)
        .where(Impact.account_id == caller.account_id, Impact.env == caller.env)
        .order_by(Impact.time_ms)
    ).all()
    for time_ms in times[3::12]:
        cancelled = time_ms + round(rng.uniform(0.1, 0.6) * stage_seconds * 1000)
        cancel_impact(
            session,
            caller,
            caller.user_id,
            ms_to_iso(time_ms),
            "Test refund",
            stage_seconds=stage_seconds,
            now=cancelled,
        )


def _batch_id(rng: random.Random, action: str, at: int) -> str:
    # The shape of lifecycle.service.new_batch_id, dated when the batch ran.
    return f"{action}-{ms_to_datetime(at):%Y%m%dT%H%M%SZ}-{rng.getrandbits(32):08x}"


def _video(rng: random.Random) -> str:
    # Made-up ids in the shape of real ones: the demo links to no real video.
    if rng.random() < 0.7:
        return "https://www.youtube.com/watch?v=" + "".join(rng.choices(_YOUTUBE_ID, k=11))
    return f"https://vimeo.com/{rng.randint(100_000_000, 999_999_999)}"


def _showcase(session: Session, caller: Caller) -> int:
    """The time of the certificate ``serve --demo`` points to: the latest one
    completed for a customer, so it shows a name and a finished timeline."""
    time_ms = session.scalar(
        select(Impact.time_ms)
        .where(
            Impact.account_id == caller.account_id,
            Impact.env == caller.env,
            Impact.stage == "completed",
        )
        .order_by(Impact.is_customer.desc(), Impact.completed_ms.desc(), Impact.id)
        .limit(1)
    )
    assert time_ms is not None  # ninety days of history always complete some
    return time_ms
