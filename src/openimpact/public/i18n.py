"""The words and number formats of the public pages, the widget and the badges.

Locales are ``en`` and ``de``; anything else falls back to ``en``. The locale
comes from ``?locale=`` first, then ``Accept-Language``. The widget script gets
the same strings (``WIDGET_KEYS``) built into it, so the page, the iframe
counter and the script say the same thing.

Numbers are formatted as ``Intl.NumberFormat`` does in a browser (``1,234`` and
``$12.34`` in English, ``1.234`` and ``12,34 $`` in German), so the widget and
the pages agree to the character.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"
_NBSP = "\u00a0"

# Per impact type: the phrase after a number, singular and plural, and the
# short label of a badge.
_TYPES: dict[str, dict[str, tuple[str, str, str]]] = {
    "en": {
        "tree_planted": ("tree planted", "trees planted", "trees planted"),
        "waste_removed": (
            "lb of ocean plastic removed",
            "lbs of ocean plastic removed",
            "ocean plastic removed",
        ),
        "carbon_captured": ("lb of CO₂ captured", "lbs of CO₂ captured", "CO₂ captured"),
        "coral_restored": (
            "coral fragment restored",
            "coral fragments restored",
            "coral restored",
        ),
        "money_donated": ("donated", "donated", "donated"),
    },
    "de": {
        "tree_planted": ("Baum gepflanzt", "Bäume gepflanzt", "Bäume gepflanzt"),
        "waste_removed": (
            "lb Meeresplastik entfernt",
            "lbs Meeresplastik entfernt",
            "Meeresplastik entfernt",
        ),
        "carbon_captured": ("lb CO₂ gebunden", "lbs CO₂ gebunden", "CO₂ gebunden"),
        "coral_restored": (
            "Korallenfragment wiederhergestellt",
            "Korallenfragmente wiederhergestellt",
            "Korallen wiederhergestellt",
        ),
        "money_donated": ("gespendet", "gespendet", "gespendet"),
    },
}

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "language": "Language",
        "profile_eyebrow": "Impact profile",
        "profile_title": "{name} · Impact profile",
        "profile_lede": "The lifetime impact of {name}, direct and on behalf of its customers, "
        "each impact tracked to a certificate.",
        "share_subtitle": "Verified impact, each one tracked to a certificate",
        "share_title": "The impact of {name}",
        "share_description": "{totals}: the verified impact of {name}.",
        "share_nothing": "The verified impact of {name}.",
        "totals_heading": "Total impact",
        "no_impact": "No impact yet.",
        "projects_heading": "Projects",
        "projects_lede": "The partner projects that carried out this impact.",
        "no_projects": "No project has received this impact yet.",
        "with_organization": "with {organization}",
        "certificates_heading": "Latest certificates",
        "no_certificates": "No completed certificate yet.",
        "completed_on": "Completed {date}",
        "on_behalf": "on behalf of {name}",
        "share_on": "Share on {network}",
        "tracked_with": "Impact tracked with OpenImpact",
        "counter_more": "See the impact profile",
        "counter_unavailable": "Impact counter unavailable",
        "customer_title": "Your impact with {business}",
        "customer_hello": "Hello {name},",
        "customer_lede": "{business} made these impacts on your behalf. Each one is tracked "
        "until the partner organization has completed it.",
        "customer_private": "This page is private: anyone with its link can see it. If you "
        "shared the link by mistake, ask {business} for a new one.",
        "customer_total": "Your total",
        "customer_impacts": "Your impacts",
        "customer_latest": "The latest {count} impacts are shown.",
        "stage_initiated": "Initiated",
        "stage_donation_received": "Donation Received",
        "stage_transferred": "Transferred to Partner",
        "stage_completed": "Completed",
        "stages": "Stages",
        "pending": "pending",
        "cancelled_on": "Cancelled {date}",
        "project": "Project",
        "certificate": "Certificate",
        "certificate_final": "Certificate (final)",
        "certificate_in_progress": "Certificate (in progress)",
        "certificate_void": "Certificate (void)",
    },
    "de": {
        "language_name": "Deutsch",
        "language": "Sprache",
        "profile_eyebrow": "Impact-Profil",
        "profile_title": "{name} · Impact-Profil",
        "profile_lede": "Die gesamte Wirkung von {name}, direkt und im Namen der Kundschaft, "
        "jede bis zum Zertifikat nachverfolgt.",
        "share_subtitle": "Nachgewiesene Wirkung, jede bis zum Zertifikat nachverfolgt",
        "share_title": "Die Wirkung von {name}",
        "share_description": "{totals}: die nachgewiesene Wirkung von {name}.",
        "share_nothing": "Die nachgewiesene Wirkung von {name}.",
        "totals_heading": "Gesamtwirkung",
        "no_impact": "Noch keine Wirkung.",
        "projects_heading": "Projekte",
        "projects_lede": "Die Partnerprojekte, die diese Wirkung umgesetzt haben.",
        "no_projects": "Noch hat kein Projekt diese Wirkung erhalten.",
        "with_organization": "mit {organization}",
        "certificates_heading": "Neueste Zertifikate",
        "no_certificates": "Noch kein abgeschlossenes Zertifikat.",
        "completed_on": "Abgeschlossen am {date}",
        "on_behalf": "im Namen von {name}",
        "share_on": "Auf {network} teilen",
        "tracked_with": "Wirkung nachverfolgt mit OpenImpact",
        "counter_more": "Zum Impact-Profil",
        "counter_unavailable": "Impact-Zähler nicht verfügbar",
        "customer_title": "Ihre Wirkung mit {business}",
        "customer_hello": "Hallo {name},",
        "customer_lede": "{business} hat diese Wirkung in Ihrem Namen erzielt. Jede wird "
        "nachverfolgt, bis die Partnerorganisation sie abgeschlossen hat.",
        "customer_private": "Diese Seite ist privat: Wer den Link hat, kann sie sehen. Wenn "
        "Sie den Link versehentlich geteilt haben, bitten Sie {business} um einen neuen.",
        "customer_total": "Ihre Gesamtwirkung",
        "customer_impacts": "Ihre Wirkungen",
        "customer_latest": "Die neuesten {count} Wirkungen werden gezeigt.",
        "stage_initiated": "Initiiert",
        "stage_donation_received": "Spende eingegangen",
        "stage_transferred": "An Partner übergeben",
        "stage_completed": "Abgeschlossen",
        "stages": "Stufen",
        "pending": "ausstehend",
        "cancelled_on": "Storniert am {date}",
        "project": "Projekt",
        "certificate": "Zertifikat",
        "certificate_final": "Zertifikat (endgültig)",
        "certificate_in_progress": "Zertifikat (in Bearbeitung)",
        "certificate_void": "Zertifikat (ungültig)",
    },
}

_MONTHS = {
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
    "de": (
        "Januar", "Februar", "März", "April", "Mai", "Juni",
        "Juli", "August", "September", "Oktober", "November", "Dezember",
    ),
}  # fmt: skip

# What the widget script needs besides the per-type phrases.
WIDGET_KEYS = ("counter_more", "counter_unavailable")


def pick_locale(requested: str | None, accept_language: str | None) -> str:
    """``?locale=`` when it names a supported locale, else the best supported
    language of ``Accept-Language`` (RFC 9110 §12.5.4 quality values), else en."""
    if requested:
        primary = requested.strip().lower().replace("_", "-").split("-", 1)[0]
        if primary in LOCALES:
            return primary
    best, best_q = DEFAULT_LOCALE, 0.0
    for position, part in enumerate((accept_language or "")[:1000].split(",")[:30]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in LOCALES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        # Equal quality: the first one listed wins.
        if q > best_q or (q == best_q and position == 0):
            best, best_q = primary, q
    return best


def text(locale: str, key: str, **values: object) -> str:
    template = _TEXT.get(locale, _TEXT[DEFAULT_LOCALE]).get(key) or _TEXT[DEFAULT_LOCALE][key]
    return template.format(**values) if values else template


def number(value: int, locale: str) -> str:
    shown = f"{value:,}"
    return shown.replace(",", ".") if locale == "de" else shown


def money(cents: int, locale: str) -> str:
    dollars, rest = divmod(cents, 100)
    if locale == "de":
        return f"{number(dollars, locale)},{rest:02d}{_NBSP}$"
    return f"${number(dollars, locale)}.{rest:02d}"


def value(impact_type: str, amount: int, locale: str) -> str:
    """The number as shown: ``1,234``, or ``$12.34`` for donations (US cents)."""
    return money(amount, locale) if impact_type == "money_donated" else number(amount, locale)


def unit(impact_type: str, amount: int, locale: str) -> str:
    """The phrase after the number: ``trees planted``, ``lb of CO₂ captured``."""
    one, other, _label = _TYPES.get(locale, _TYPES[DEFAULT_LOCALE])[impact_type]
    return one if amount == 1 else other


def amount(impact_type: str, amount: int, locale: str) -> str:
    """``1,234 trees planted``, ``$12.34 donated``."""
    return f"{value(impact_type, amount, locale)} {unit(impact_type, amount, locale)}"


def badge_label(impact_type: str, locale: str) -> str:
    return _TYPES.get(locale, _TYPES[DEFAULT_LOCALE])[impact_type][2]


def badge_message(impact_type: str, amount: int, locale: str) -> str:
    """The right half of a badge: the number, with ``lbs`` where the label
    does not say the unit."""
    shown = value(impact_type, amount, locale)
    if impact_type in ("waste_removed", "carbon_captured"):
        return f"{shown} {'lb' if amount == 1 else 'lbs'}"
    return shown


def long_date(moment: datetime, locale: str) -> str:
    months = _MONTHS.get(locale, _MONTHS[DEFAULT_LOCALE])
    if locale == "de":
        return f"{moment.day}. {months[moment.month - 1]} {moment.year}"
    return f"{moment.day} {months[moment.month - 1]} {moment.year}"


def widget_strings() -> dict[str, dict[str, object]]:
    """Everything the widget script says, per locale."""
    return {
        locale: {
            "types": {key: list(forms[:2]) for key, forms in _TYPES[locale].items()},
            **{key: _TEXT[locale][key] for key in WIDGET_KEYS},
        }
        for locale in LOCALES
    }


def translator(locale: str) -> Callable[..., str]:
    """``t("key", name=...)`` for templates, bound to one locale."""

    def t(key: str, **values: object) -> str:
        return text(locale, key, **values)

    return t
