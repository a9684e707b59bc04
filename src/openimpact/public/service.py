"""Public impact: what a profile publishes, and the private customer pages.

    public_profiles (slug, name, logo, on/off) ──┐
    ledgers, production row (running totals) ────┴─▶ published_profile(slug)
        ─▶ /public/v1/profiles/{slug}, badges, widget, /impact/{slug}
    customers ─▶ customer_pages (token) ─▶ customer_page(token) ─▶ /my-impact/{token}

Totals are the ledger's production row (direct plus on behalf of customers;
cancelled impacts were already taken out by ``cancel_impact``): the profile
by its unique slug and that row by its primary key, in one query, whatever the
account's size. A profile that is off and a slug that
does not exist raise the very same NotFound.

Everything here ends up on pages anyone can open, so nothing here carries an
email address: customers appear by name only, exactly as on certificates
(a name that may be an address is not shown at all), and a business name has
addresses masked (certificates.service.mask_emails).

The dashboard calls the plain functions at the end: profile_settings,
update_profile, embed_snippets, customer_page_link and rotate_customer_page_link.
"""

from __future__ import annotations

import enum
import html
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, Ledger
from openimpact.certificates.service import mask_emails, status_of
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.errors import NotFound, ValidationFailed
from openimpact.impacts.models import STAGES, Impact
from openimpact.kit import RECORD_KEYS, _safe_text
from openimpact.projects.models import Project
from openimpact.public import links
from openimpact.public.i18n import LOCALES
from openimpact.public.models import PublicProfile
from openimpact.timeutil import now_ms

_profiles = table(PublicProfile)
_accounts = table(Account)
_ledgers = table(Ledger)
_impacts = table(Impact)
_customers = table(Customer)
_projects = table(Project)

PUBLIC_ENV = "production"
NO_PROFILE = "no public impact profile at this address"
NO_CUSTOMER_PAGE = "no customer impact page at this address"
THEMES = ("light", "dark")
# parse_types' rule as a JSON Schema pattern: record keys, comma-separated
# (blanks around them and empty items are ignored).
_KEY = "(" + "|".join(RECORD_KEYS) + ")"
TYPES_PATTERN = rf"^\s*{_KEY}?(\s*,\s*{_KEY}?)*\s*$"
SLUG_RULE = (
    "3 to 40 lower-case letters, digits and hyphens, starting and ending with a letter or digit"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
LATEST_CERTIFICATES = 6
CUSTOMER_PAGE_IMPACTS = 100


# What a profile publishes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedProfile:
    """An enabled profile and its totals: all the public JSON, the badges and
    the widget show. Hashable, so a rendering can be cached by it."""

    account_id: int
    slug: str
    name: str
    logo_url: str | None
    totals: tuple[tuple[str, int], ...]  # (record key, amount) in RECORD_KEYS order

    def total(self, impact_type: str) -> int:
        return dict(self.totals)[impact_type]

    @property
    def shown_types(self) -> tuple[str, ...]:
        """The types a counter shows when none are chosen: those with impact,
        or trees when there is none yet."""
        return tuple(k for k, v in self.totals if v > 0) or ("tree_planted",)


def normalize_slug(slug: str) -> str | None:
    """The stored form of a slug a visitor typed (slugs are case-insensitive),
    or None when it cannot be one."""
    key = slug.strip().lower()
    return key if _SLUG.match(key) else None


_PUBLISHED = (
    select(
        _profiles.c.account_id,
        _profiles.c.slug,
        _profiles.c.name,
        _profiles.c.logo_url,
        _accounts.c.name,
        *(
            func.coalesce(_ledgers.c[f"user_{k}"], 0)
            + func.coalesce(_ledgers.c[f"customer_{k}"], 0)
            for k in RECORD_KEYS
        ),
    )
    .join(_accounts, _accounts.c.id == _profiles.c.account_id)
    .outerjoin(
        _ledgers,
        and_(_ledgers.c.account_id == _profiles.c.account_id, _ledgers.c.env == PUBLIC_ENV),
    )
    .where(_profiles.c.enabled.is_(True))
)


def published_profile(session: Session, slug: str) -> PublishedProfile:
    """The enabled profile at ``slug`` with its production totals; NotFound,
    the same one, for an unknown slug and for a profile that is off."""
    key = normalize_slug(slug)
    row = session.execute(_PUBLISHED.where(_profiles.c.slug == key)).first() if key else None
    if row is None:
        raise NotFound(NO_PROFILE)
    account_id, stored_slug, name, logo_url, account_name, *amounts = row
    return PublishedProfile(
        account_id=account_id,
        slug=stored_slug,
        name=mask_emails(name or account_name) or stored_slug,
        logo_url=logo_url,
        totals=tuple((k, int(v)) for k, v in zip(RECORD_KEYS, amounts, strict=True)),
    )


class _Miss(enum.Enum):
    MISS = enum.auto()


MISS: Final = _Miss.MISS


class PublishedCache:
    """Recent answers of :func:`published_profile` per slug, in this process.

    The public endpoints are read far more often than totals change, and a
    popular widget can send thousands of reads a second; for ``ttl`` seconds
    they share one database read. A change (an impact, a cancellation, the
    profile turned off) therefore shows within ``ttl`` seconds, well inside
    the minute the public endpoints promise. Unknown slugs are remembered too
    (as None), and the oldest entries go first past ``max_entries``, so
    made-up slugs cost neither the database nor unbounded memory.
    """

    def __init__(self, ttl: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, PublishedProfile | None]] = OrderedDict()

    def get(self, key: str) -> PublishedProfile | _Miss | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return MISS
        return entry[1]

    def forget(self, *keys: str | None) -> None:
        """Drop what this process remembers of these slugs (after a change made
        here; other processes see it within ``ttl``)."""
        for key in keys:
            if key is not None:
                self._entries.pop(key, None)

    def put(self, key: str, value: PublishedProfile | None) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic() + self.ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


# The profile page --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectShown:
    project_id: str
    name: str
    location: str
    organization: str
    country_code: str


@dataclass(frozen=True, slots=True)
class CertificateShown:
    certificate_id: str
    impact_type: str
    amount: int
    category: str | None
    customer_name: str | None  # as on the certificate: never an email
    completed_ms: int


@dataclass(frozen=True, slots=True)
class ProfilePage:
    profile: PublishedProfile
    projects: tuple[ProjectShown, ...]
    certificates: tuple[CertificateShown, ...]


def _localized(project_i18n: dict[str, Any], locale: str, field: str) -> str:
    text = (project_i18n.get(locale) or {}).get(field) or (project_i18n.get("en") or {}).get(field)
    return str(text or "")


def public_customer_name(name: str | None) -> str | None:
    """A customer's name as certificates show it: whitespace tidied, and not
    at all when it may be an email address."""
    tidy = " ".join((name or "").split())
    return tidy if tidy and "@" not in tidy else None


def profile_page(session: Session, profile: PublishedProfile, locale: str) -> ProfilePage:
    """What the profile page shows besides the totals: the projects that
    received the account's production impacts, and its latest completed
    certificates. Both read the partial indexes of public/models.py: one index
    seek per catalogue project, and the first rows of one index range."""
    i = _impacts
    received = exists().where(
        i.c.account_id == profile.account_id,
        i.c.env == PUBLIC_ENV,
        # Repeated for the planner: it is the partial index's condition. No
        # filter on cancelled_ms: an impact that reached a project can no
        # longer be cancelled.
        i.c.project_id.is_not(None),
        i.c.project_id == _projects.c.project_id,
    )
    projects = tuple(
        ProjectShown(
            project_id=project_id,
            name=_localized(i18n, locale, "name") or project_id,
            location=_localized(i18n, locale, "location"),
            organization=organization,
            country_code=country_code,
        )
        for project_id, i18n, organization, country_code in session.execute(
            select(
                _projects.c.project_id,
                _projects.c.i18n,
                _projects.c.organization,
                _projects.c.country_code,
            )
            .where(received)
            .order_by(_projects.c.position, _projects.c.project_id)
        )
    )
    certificates = tuple(
        CertificateShown(
            certificate_id=certificate_id,
            impact_type=impact_type,
            amount=amount,
            category=category,
            customer_name=public_customer_name(customer_name),
            completed_ms=completed_ms,
        )
        for certificate_id, impact_type, amount, category, customer_name, completed_ms in (
            session.execute(
                select(
                    i.c.certificate_id,
                    i.c.impact_type,
                    i.c.amount,
                    i.c.category,
                    _customers.c.name,
                    i.c.completed_ms,
                )
                .outerjoin(_customers, _customers.c.id == i.c.customer_pk)
                .where(
                    i.c.account_id == profile.account_id,
                    i.c.env == PUBLIC_ENV,
                    i.c.completed_ms.is_not(None),
                    i.c.cancelled_ms.is_(None),
                    i.c.certificate_id.is_not(None),
                )
                .order_by(i.c.completed_ms.desc())
                .limit(LATEST_CERTIFICATES)
            )
        )
    )
    return ProfilePage(profile, projects, certificates)


# The customer page -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerImpact:
    time_ms: int
    impact_type: str
    amount: int
    category: str | None
    stage: str
    reached: tuple[tuple[str, int | None], ...]  # (stage, when) for each stage
    cancelled_ms: int | None
    project_name: str | None
    project_location: str | None
    certificate_id: str | None
    status: str  # in_progress | completed | void


@dataclass(frozen=True, slots=True)
class CustomerPageView:
    business_name: str
    customer_name: str | None
    totals: tuple[tuple[str, int], ...]  # types with impact, not cancelled
    impacts: tuple[CustomerImpact, ...]  # newest first, at most CUSTOMER_PAGE_IMPACTS
    more: bool  # older impacts exist beyond those shown


def customer_page(session: Session, token: str, locale: str = "en") -> CustomerPageView:
    """One customer's production impacts with the business whose customer they
    are, by the token of their private link; NotFound for any other token."""
    customer_pk = links.customer_by_token(session, token)
    if customer_pk is None:
        raise NotFound(NO_CUSTOMER_PAGE)
    customer_name, business_name = session.execute(
        select(_customers.c.name, _accounts.c.name)
        .join(_accounts, _accounts.c.id == _customers.c.account_id)
        .where(_customers.c.id == customer_pk)
    ).one()
    i = _impacts
    rows = session.execute(
        select(
            i.c.time_ms,
            i.c.impact_type,
            i.c.amount,
            i.c.category,
            i.c.stage,
            i.c.donation_available_ms,
            i.c.donation_sent_ms,
            i.c.completed_ms,
            i.c.cancelled_ms,
            i.c.project_id,
            i.c.project_location,
            i.c.certificate_id,
        )
        .where(i.c.customer_pk == customer_pk, i.c.env == PUBLIC_ENV)
        .order_by(i.c.time_ms.desc())
        .limit(CUSTOMER_PAGE_IMPACTS + 1)
    ).all()
    project_ids = {row.project_id for row in rows if row.project_id}
    project_texts = {
        project_id: i18n
        for project_id, i18n in session.execute(
            select(_projects.c.project_id, _projects.c.i18n).where(
                _projects.c.project_id.in_(project_ids)
            )
        )
    }
    sums = dict(
        session.execute(
            select(i.c.impact_type, func.sum(i.c.amount))
            .where(
                i.c.customer_pk == customer_pk,
                i.c.env == PUBLIC_ENV,
                i.c.cancelled_ms.is_(None),
            )
            .group_by(i.c.impact_type)
        ).all()
    )
    impacts = []
    for row in rows[:CUSTOMER_PAGE_IMPACTS]:
        texts = project_texts.get(row.project_id or "")
        times = (row.time_ms, row.donation_available_ms, row.donation_sent_ms, row.completed_ms)
        impacts.append(
            CustomerImpact(
                time_ms=row.time_ms,
                impact_type=row.impact_type,
                amount=row.amount,
                category=row.category,
                stage=row.stage,
                reached=tuple(zip(STAGES, times, strict=True)),
                cancelled_ms=row.cancelled_ms,
                project_name=_localized(texts, locale, "name") if texts else None,
                # The snapshot taken at transfer when the project has left the catalogue.
                project_location=(
                    _localized(texts, locale, "location") if texts else row.project_location
                ),
                certificate_id=row.certificate_id,
                status=status_of(row),
            )
        )
    return CustomerPageView(
        business_name=mask_emails(business_name) or "",
        customer_name=public_customer_name(customer_name),
        totals=tuple((k, int(sums[k])) for k in RECORD_KEYS if sums.get(k)),
        impacts=tuple(impacts),
        more=len(rows) > CUSTOMER_PAGE_IMPACTS,
    )


# For the dashboard: profile settings -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """What an account publishes. ``slug`` may be unset until chosen; the
    profile can only be on with one."""

    slug: str | None
    name: str | None  # the display name as set; None: the account's name is used
    logo_url: str | None
    enabled: bool
    display_name: str  # what the profile shows as its name


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"no account with id {account_id}")
    return account


def profile_settings(session: Session, account_id: int) -> ProfileSettings:
    """The public profile settings of an account (all unset, off, when it
    never configured one)."""
    account = _account(session, account_id)
    row = session.get(PublicProfile, account_id)
    name = row.name if row is not None else None
    return ProfileSettings(
        slug=row.slug if row is not None else None,
        name=name,
        logo_url=row.logo_url if row is not None else None,
        enabled=bool(row.enabled) if row is not None else False,
        display_name=mask_emails(name or account.name) or "",
    )


def _clean_slug(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    key = value.strip().lower()
    if not _SLUG.match(key):
        raise ValidationFailed(f"slug: '{value.strip()[:60]}' is not a valid slug; use {SLUG_RULE}")
    return key


def _clean_text(field: str, value: str | None, max_length: int) -> str | None:
    if value is None:
        return None
    try:
        _safe_text(value)
    except ValueError as exc:
        raise ValidationFailed(f"{field}: {exc}") from None
    tidy = " ".join(value.split())
    if len(tidy) > max_length:
        raise ValidationFailed(f"{field}: must be at most {max_length} characters")
    return tidy or None


def clean_logo_url(value: str | None) -> str | None:
    """An http(s) URL with a host, or None; anything else (``javascript:``,
    ``data:``, a relative path) is refused with a message naming the field."""
    if value is None or not value.strip():
        return None
    url = value.strip()
    try:
        _safe_text(url)
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("logo_url: must be an http:// or https:// URL with a host")
    if any(char.isspace() for char in url) or len(url) > 500:
        raise ValidationFailed("logo_url: must be at most 500 characters, without spaces")
    return url


def update_profile(
    session: Session,
    account_id: int,
    *,
    slug: str | _Unset | None = UNSET,
    name: str | _Unset | None = UNSET,
    logo_url: str | _Unset | None = UNSET,
    enabled: bool | _Unset = UNSET,
) -> ProfileSettings:
    """Change what an account publishes; arguments left out stay as they are,
    ``None`` or an empty string clears a text. Every refusal is a
    ValidationFailed whose message starts with the field (``slug: ...``)."""
    _account(session, account_id)
    row = session.get(PublicProfile, account_id)
    if row is None:
        row = PublicProfile(account_id=account_id, enabled=False, updated_ms=now_ms())
        session.add(row)
    if not isinstance(slug, _Unset):
        new_slug = _clean_slug(slug)
        if new_slug is not None and new_slug != row.slug:
            taken = session.scalar(
                select(_profiles.c.account_id).where(
                    _profiles.c.slug == new_slug, _profiles.c.account_id != account_id
                )
            )
            if taken is not None:
                raise ValidationFailed(f"slug: '{new_slug}' is already taken; choose another")
        row.slug = new_slug
    if not isinstance(name, _Unset):
        row.name = _clean_text("name", name, 200)
    if not isinstance(logo_url, _Unset):
        row.logo_url = clean_logo_url(logo_url)
    if not isinstance(enabled, _Unset):
        row.enabled = bool(enabled)
    if row.enabled and row.slug is None:
        raise ValidationFailed("slug: choose a slug before turning the public profile on")
    row.updated_ms = now_ms()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another account took the slug between the check and this write.
        raise ValidationFailed(f"slug: '{row.slug}' is already taken; choose another") from None
    return profile_settings(session, account_id)


# For the dashboard: embed snippets ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedSnippets:
    profile_url: str
    json_url: str
    script_tag: str  # the one-line widget
    iframe_url: str
    iframe_html: str  # the same counter for sites that allow no scripts
    badge_svg_url: str
    badge_json_url: str  # shields.io endpoint-badge JSON
    shields_url: str  # img.shields.io/endpoint?url=<badge_json_url>
    badge_markdown: str


def parse_types(value: str | Sequence[str] | None, field: str = "types") -> tuple[str, ...]:
    """``tree_planted,waste_removed`` (or a list of them), in the order given,
    each once; an unknown type is a ValidationFailed naming ``field``."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    chosen: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part not in RECORD_KEYS:
            raise ValidationFailed(f"{field}: '{part[:40]}' is not one of {', '.join(RECORD_KEYS)}")
        if part not in chosen:
            chosen.append(part)
    return tuple(chosen)


def check_theme(theme: str) -> str:
    if theme not in THEMES:
        raise ValidationFailed(f"theme: must be one of {', '.join(THEMES)}")
    return theme


def embed_snippets(
    base_url: str,
    slug: str,
    *,
    types: str | Sequence[str] | None = None,
    theme: str = "light",
    locale: str = "en",
    badge_type: str = "tree_planted",
) -> EmbedSnippets:
    """The copy-and-paste snippets for a profile at ``slug`` served from
    ``base_url``: the widget's script tag, its iframe form, and the badges."""
    key = normalize_slug(slug)
    if key is None:
        raise ValidationFailed(f"slug: '{slug[:60]}' is not a valid slug; use {SLUG_RULE}")
    chosen = parse_types(types)
    check_theme(theme)
    if locale not in LOCALES:
        raise ValidationFailed(f"locale: must be one of {', '.join(LOCALES)}")
    if badge_type not in RECORD_KEYS:
        raise ValidationFailed(f"badge_type: must be one of {', '.join(RECORD_KEYS)}")
    base = base_url.rstrip("/")
    type_list = ",".join(chosen)
    # Slug, types, theme and locale were checked against fixed alphabets
    # above; the base URL is the only free text, so it alone is escaped.
    # crossorigin="anonymous": the browser then loads the script without
    # cookies too (the server answers it with CORS headers).
    script = (
        f'<script async src="{html.escape(base)}/widget.js" crossorigin="anonymous" '
        f'data-openimpact-counter="{key}"'
        + (f' data-types="{type_list}"' if type_list else "")
        + f' data-theme="{theme}" data-locale="{locale}"></script>'
    )
    query = ({"types": type_list} if type_list else {}) | {"theme": theme, "locale": locale}
    iframe_url = f"{base}/widget/{key}/counter?{urlencode(query)}"
    iframe = (
        f'<iframe src="{html.escape(iframe_url)}" title="Impact counter" width="360" '
        'height="180" frameborder="0" loading="lazy"></iframe>'
    )
    badge = f"{base}/badge/{key}/{badge_type}"
    shields = "https://img.shields.io/endpoint?url=" + quote(f"{badge}.json", safe="")
    return EmbedSnippets(
        profile_url=f"{base}/impact/{key}",
        json_url=f"{base}/public/v1/profiles/{key}",
        script_tag=script,
        iframe_url=iframe_url,
        iframe_html=iframe,
        badge_svg_url=f"{badge}.svg",
        badge_json_url=f"{badge}.json",
        shields_url=shields,
        badge_markdown=f"[![Impact]({badge}.svg)]({base}/impact/{key})",
    )


# For the dashboard: customer page links ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerPageLink:
    customer_id: str
    token: str
    url: str


def _production_customer(session: Session, account_id: int, customer_id: str) -> int:
    pk = session.scalar(
        select(_customers.c.id).where(
            _customers.c.customer_id == customer_id.strip(),
            _customers.c.account_id == account_id,
            _customers.c.env == PUBLIC_ENV,
        )
    )
    if pk is None:
        raise NotFound(f"no production customer with id {customer_id[:40]}")
    return pk


def customer_page_link(
    session: Session, account_id: int, customer_id: str, base_url: str
) -> CustomerPageLink:
    """The private page link of one of the account's production customers
    (made on first use; call it in a write transaction)."""
    pk = _production_customer(session, account_id, customer_id)
    token = links.tokens_for(session, [pk])[pk]
    return CustomerPageLink(customer_id, token, links.customer_page_url(base_url, token))


def rotate_customer_page_link(
    session: Session, account_id: int, customer_id: str, base_url: str
) -> CustomerPageLink:
    """A new private link for the customer; the old one is a 404 from the commit on."""
    pk = _production_customer(session, account_id, customer_id)
    token = links.rotate(session, pk)
    return CustomerPageLink(customer_id, token, links.customer_page_url(base_url, token))
