"""``openimpact plans create|list`` and ``openimpact accounts plan``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.orm import Session

from openimpact.accounts.service import get_account
from openimpact.commandline import in_transaction
from openimpact.plans import service


def _show(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "no plan"
    bonuses = ", ".join(f"{amount} {kind}" for kind, amount in sorted(plan["bonuses"].items()))
    return f"{plan['name']} (each month: {bonuses})"


def cmd_create(args: argparse.Namespace) -> int:
    plan = in_transaction(
        lambda s: service.create_plan(s, args.name, service.parse_bonuses(args.bonus or []))
    )
    print(json.dumps(plan) if args.json else f"Plan {_show(plan)} created.")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    plans = in_transaction(service.list_plans)
    if args.json:
        print(json.dumps(plans))
    else:
        for plan in plans:
            print(_show(plan))
        if not plans:
            print("No plans.")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    def assign(session: Session) -> dict[str, Any] | None:
        account = get_account(session, args.user_id)
        return service.assign_plan(session, account, None if args.none else args.plan)

    plan = in_transaction(assign)
    print(json.dumps(plan) if args.json else f"{args.user_id} is on {_show(plan)}.")
    return 0


def add_plans_parsers(sub: Any) -> None:
    plans = sub.add_parser("plans", help="plans and their monthly bonus impacts")
    actions = plans.add_subparsers(dest="plans_command", required=True)
    create = actions.add_parser("create", help="a plan with bonus impacts each month")
    create.add_argument("--name", required=True)
    create.add_argument("--bonus", action="append", metavar="TYPE=AMOUNT", required=True)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_create)
    listp = actions.add_parser("list", help="every plan")
    listp.add_argument("--json", action="store_true")
    listp.set_defaults(func=cmd_list)


def add_account_plan_parsers(accounts: Any) -> None:
    plan = accounts.add_parser("plan", help="put an account on a plan")
    plan.add_argument("--user-id", required=True)
    which = plan.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", help="the plan's name")
    which.add_argument("--none", action="store_true", help="no plan")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_assign)
