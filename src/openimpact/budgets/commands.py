"""``openimpact prices set|list`` and ``openimpact accounts budget``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.orm import Session

from openimpact.accounts.service import get_account
from openimpact.budgets import service
from openimpact.commandline import in_transaction
from openimpact.errors import ValidationFailed


def _pairs(pairs: list[str]) -> dict[str, int]:
    prices: dict[str, int] = {}
    for pair in pairs:
        kind, sep, cents = pair.partition("=")
        try:
            prices[kind.strip()] = int(cents) if sep else -1
        except ValueError:
            raise ValidationFailed(f"prices: '{pair[:60]}' must be TYPE=CENTS") from None
        if not sep:
            raise ValidationFailed(f"prices: '{pair[:60]}' must be TYPE=CENTS")
    return prices


def cmd_prices(args: argparse.Namespace) -> int:
    if args.prices_command == "set":
        prices = in_transaction(lambda s: service.set_prices(s, _pairs(args.pairs)))
    else:
        prices = in_transaction(service.unit_prices)
    if args.json:
        print(json.dumps(prices))
    else:
        for kind, cents in sorted(prices.items()):
            print(f"{kind:<16} {cents} cents per unit")
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    def change(session: Session) -> dict[str, Any]:
        account = get_account(session, args.user_id)
        if args.off:
            service.set_budget(session, account.id, args.env, None)
        elif args.monthly_cents is not None:
            service.set_budget(session, account.id, args.env, args.monthly_cents)
        return service.budget_view(session, account.id, args.env).to_json()

    view = in_transaction(change)
    if args.json:
        print(json.dumps(view))
    elif view["monthly_cents"] is None:
        print(f"No budget for {args.env}: impact is never refused for spend.")
    else:
        print(
            f"Budget for {args.env}: {service.dollars(view['monthly_cents'])} a month; "
            f"{service.dollars(view['spent_cents'])} spent in {view['month']}, "
            f"resets on {view['resets_on']}."
        )
    return 0


def add_prices_parsers(sub: Any) -> None:
    prices = sub.add_parser("prices", help="unit prices of impact types (US cents)")
    actions = prices.add_subparsers(dest="prices_command", required=True)
    setp = actions.add_parser("set", help="set prices: tree_planted=40 waste_removed=25 …")
    setp.add_argument("pairs", nargs="+", metavar="TYPE=CENTS")
    setp.add_argument("--json", action="store_true")
    setp.set_defaults(func=cmd_prices)
    listp = actions.add_parser("list", help="the prices in force")
    listp.add_argument("--json", action="store_true")
    listp.set_defaults(func=cmd_prices)


def add_account_budget_parsers(accounts: Any) -> None:
    budget = accounts.add_parser("budget", help="show, set or remove a monthly budget cap")
    budget.add_argument("--user-id", required=True)
    budget.add_argument("--env", choices=["production", "sandbox"], default="production")
    change = budget.add_mutually_exclusive_group()
    change.add_argument("--monthly-cents", type=int, help="the cap in US cents")
    change.add_argument("--off", action="store_true", help="remove the cap")
    budget.add_argument("--json", action="store_true")
    budget.set_defaults(func=cmd_budget)
