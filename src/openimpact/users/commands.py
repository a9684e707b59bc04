"""``openimpact users invite|list|remove|reset-link``: dashboard users from the
command line, through the same service as the dashboard's Team page."""

from __future__ import annotations

import argparse
import json
from typing import Any

from openimpact.accounts.service import get_account
from openimpact.commandline import base_url, in_transaction
from openimpact.config import get_settings
from openimpact.errors import NotFound
from openimpact.timeutil import ms_to_iso
from openimpact.users import service
from openimpact.users.models import ROLES


def _base(args: argparse.Namespace) -> str:
    return base_url(args.base_url)


def cmd_invite(args: argparse.Namespace) -> int:
    settings = get_settings()

    def invite(session: Any) -> service.SentInvitation:
        account = get_account(session, args.user_id)
        return service.send_invite(session, account, args.email, args.role, _base(args), settings)

    sent = in_transaction(invite)
    if args.json:
        print(
            json.dumps(
                {
                    "user_id": args.user_id,
                    "email": sent.email,
                    "role": sent.role,
                    "invite_url": sent.url,
                }
            )
        )
        return 0
    print(f"Invited {sent.email} as {sent.role} of {args.user_id}.")
    print(f"  {sent.url}")
    print("The link works once, for 7 days" + (", and has been emailed." if sent.emailed else "."))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    def listing(session: Any) -> list[dict[str, Any]]:
        account = get_account(session, args.user_id)
        return [
            {**service.describe(user), "created_on": ms_to_iso(user.created_ms)}
            for user in service.users_of(session, account.id)
        ]

    rows = in_transaction(listing)
    if args.json:
        print(json.dumps([{k: v for k, v in row.items() if k != "created_ms"} for row in rows]))
        return 0
    if not rows:
        print(f"{args.user_id} has no dashboard users; invite one with `openimpact users invite`.")
    for row in rows:
        print(f"{row['email']:<40} {row['role']:<7} {row['status']:<8} since {row['created_on']}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    def remove(session: Any) -> str:
        account = get_account(session, args.user_id)
        user = service.find_by_email(session, account.id, args.email)
        service.remove(session, account.id, user)
        return user.email

    print(f"Removed {in_transaction(remove)} from {args.user_id}; their sessions have ended.")
    return 0


def cmd_reset_link(args: argparse.Namespace) -> int:
    """A reset link printed for the operator to hand over (when no SMTP is set up)."""

    def reset(session: Any) -> str:
        found = service.request_reset(session, args.email)
        if found is None:
            raise NotFound(f"no dashboard user with email {args.email} has set a password yet")
        return service.reset_url(_base(args), found[1])

    print(in_transaction(reset))
    print("The link works once, for one hour.")
    return 0


def add_users_parsers(sub: Any) -> None:
    users = sub.add_parser("users", help="manage dashboard users").add_subparsers(
        dest="action", required=True
    )
    invite = users.add_parser("invite", help="invite a user: prints a one-time link (7 days)")
    invite.add_argument("--user-id", required=True, help="the account (U...)")
    invite.add_argument("--email", required=True)
    invite.add_argument("--role", choices=ROLES, default="member")
    invite.add_argument("--base-url", help="server address for the link (default: public URL)")
    invite.add_argument("--json", action="store_true")
    invite.set_defaults(func=cmd_invite)
    listing = users.add_parser("list", help="list an account's dashboard users")
    listing.add_argument("--user-id", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    remove = users.add_parser("remove", help="remove a dashboard user and end their sessions")
    remove.add_argument("--user-id", required=True)
    remove.add_argument("--email", required=True)
    remove.set_defaults(func=cmd_remove)
    reset = users.add_parser("reset-link", help="print a one-time password reset link (1 hour)")
    reset.add_argument("--email", required=True)
    reset.add_argument("--base-url", help="server address for the link (default: public URL)")
    reset.set_defaults(func=cmd_reset_link)
