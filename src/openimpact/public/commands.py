"""``openimpact accounts profile`` and ``openimpact accounts customer-page``:
the public profile and the customers' private links from the command line,
through the same service functions as the dashboard."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.service import get_account
from openimpact.commandline import base_url, in_transaction
from openimpact.customers import service as customers
from openimpact.errors import NotFound
from openimpact.public import service
from openimpact.public.service import UNSET


def _base_url(args: argparse.Namespace) -> str:
    return base_url(args.base_url)


def cmd_profile(args: argparse.Namespace) -> int:
    base = _base_url(args)

    def change(session: Session) -> dict[str, Any]:
        account = get_account(session, args.user_id)
        changes: dict[str, Any] = {
            "slug": args.slug if args.slug is not None else UNSET,
            "name": args.name if args.name is not None else UNSET,
            "logo_url": args.logo_url if args.logo_url is not None else UNSET,
            "enabled": args.enabled if args.enabled is not None else UNSET,
        }
        if all(value is UNSET for value in changes.values()):
            settings = service.profile_settings(session, account.id)  # only show them
        else:
            settings = service.update_profile(session, account.id, **changes)
        out: dict[str, Any] = {
            "user_id": account.user_id,
            "slug": settings.slug,
            "name": settings.display_name,
            "logo_url": settings.logo_url,
            "enabled": settings.enabled,
        }
        if settings.slug:
            snippets = service.embed_snippets(base, settings.slug)
            out["profile_url"] = snippets.profile_url
            out["widget"] = snippets.script_tag
            out["badge"] = snippets.badge_svg_url
        return out

    result = in_transaction(change)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    state = "on" if result["enabled"] else "off"
    print(f"Public profile of {result['user_id']}: {state}")
    print(f"  slug      {result['slug'] or '(none yet)'}")
    print(f"  name      {result['name']}")
    print(f"  logo      {result['logo_url'] or '(none)'}")
    if "profile_url" in result:
        print(f"  page      {result['profile_url']}")
        print(f"  widget    {result['widget']}")
        print(f"  badge     {result['badge']}")
    return 0


def cmd_customer_page(args: argparse.Namespace) -> int:
    base = _base_url(args)

    def link(session: Session) -> service.CustomerPageLink:
        account = get_account(session, args.user_id)
        customer_id = args.customer_id
        if customer_id is None:
            found = customers.by_email(
                account.id, service.PUBLIC_ENV, args.customer_email.strip().lower()
            )
            customer_id = session.scalar(select(found.c.customer_id))
            if customer_id is None:
                raise NotFound("no production customer with this email")
        make = service.rotate_customer_page_link if args.rotate else service.customer_page_link
        return make(session, account.id, customer_id, base)

    result = in_transaction(link)
    if args.json:
        print(json.dumps({"customer_id": result.customer_id, "url": result.url}))
    else:
        verb = "New link" if args.rotate else "Link"
        print(f"{verb} for customer {result.customer_id}: {result.url}")
        if args.rotate:
            print("The previous link no longer works.")
    return 0


def add_account_public_parsers(accounts: Any) -> None:
    """Adds ``profile`` and ``customer-page`` to ``openimpact accounts``."""
    profile = accounts.add_parser(
        "profile", help="show or change the account's public impact profile"
    )
    profile.add_argument("--user-id", required=True)
    profile.add_argument("--slug", help="its address: /impact/<slug> (3-40 of a-z, 0-9, -)")
    on_off = profile.add_mutually_exclusive_group()
    on_off.add_argument("--on", dest="enabled", action="store_const", const=True)
    on_off.add_argument("--off", dest="enabled", action="store_const", const=False)
    profile.add_argument("--name", help='display name; "" for the account name')
    profile.add_argument("--logo-url", help='an http(s) URL; "" for none')
    profile.add_argument("--base-url", help="server address for the links shown")
    profile.add_argument("--json", action="store_true")
    profile.set_defaults(func=cmd_profile, enabled=None)

    page = accounts.add_parser(
        "customer-page", help="show or rotate a customer's private impact page link"
    )
    page.add_argument("--user-id", required=True)
    who = page.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer-id")
    who.add_argument("--customer-email")
    page.add_argument("--rotate", action="store_true", help="replace the link; the old one stops")
    page.add_argument("--base-url", help="server address (default OPENIMPACT_PUBLIC_URL)")
    page.add_argument("--json", action="store_true")
    page.set_defaults(func=cmd_customer_page)
