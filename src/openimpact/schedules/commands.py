"""``openimpact schedules``: the same service functions as /v1/schedules, for
an account and environment named on the command line, and ``run``, the
worker's pass for a given day."""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from openimpact.accounts.service import get_account, server_secret
from openimpact.auth import Caller
from openimpact.commandline import in_transaction, open_database
from openimpact.config import get_settings
from openimpact.errors import ValidationFailed, describe_validation_errors
from openimpact.kit import parse_day
from openimpact.outbox.service import Events
from openimpact.pagination import CursorCodec
from openimpact.schedules import service
from openimpact.schedules.schemas import ScheduleCreate, SchedulePatch


def _caller(session: Session, args: argparse.Namespace) -> Caller:
    account = get_account(session, args.user_id)
    return Caller(account.id, account.user_id, account.email, account.name, args.env, "")


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        print("No schedules.")
    for row in rows:
        ends = f" until {row['ends_on']}" if "ends_on" in row else ""
        nxt = f", next {row['next_run_on']}" if "next_run_on" in row else ""
        who = f" for {row['customer_email']}" if "customer_email" in row else ""
        print(
            f"{row['id']}  {row['status']:<6}  {row['amount']} {row['impact_type']}{who} "
            f"on day {row['day_of_month']} from {row['starts_on']}{ends}{nxt}"
        )


def cmd_list(args: argparse.Namespace) -> int:
    def read(session: Session) -> list[dict[str, Any]]:
        caller = _caller(session, args)
        codec = CursorCodec(server_secret(session, "cursor"))
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            page, cursor = service.list_schedules(session, caller, 100, cursor, codec)
            rows.extend(page)
            if cursor is None:
                return rows

    _show(in_transaction(read), args.json)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {
        "impact_type": args.impact_type,
        "amount": args.amount,
        "day_of_month": args.day_of_month,
        "starts_on": args.starts_on,
    }
    optional = {
        "ends_on": args.ends_on,
        "category": args.category,
        "customer_email": args.customer_email,
        "customer_name": args.customer_name,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    if args.metadata:
        fields["metadata"] = dict(pair.split("=", 1) for pair in args.metadata)
    try:
        body = ScheduleCreate.model_validate(fields)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_errors(list(exc.errors()))) from None
    created = in_transaction(lambda s: service.create_schedule(s, _caller(s, args), body))
    _show([created], args.json)
    return 0


def _patch(args: argparse.Namespace, patch: SchedulePatch) -> int:
    changed = in_transaction(
        lambda s: service.update_schedule(s, _caller(s, args), args.schedule_id, patch)
    )
    _show([changed], args.json)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _patch(args, SchedulePatch(status="paused"))


def cmd_resume(args: argparse.Namespace) -> int:
    return _patch(args, SchedulePatch(status="active"))


def cmd_delete(args: argparse.Namespace) -> int:
    gone = in_transaction(lambda s: service.delete_schedule(s, _caller(s, args), args.schedule_id))
    print(json.dumps(gone) if args.json else f"Deleted {gone['id']}.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    as_of: date | None = parse_day("--as-of", args.as_of)
    db = open_database()
    try:
        account_id = None
        if args.user_id:
            account_id = db.run_sync(lambda s: get_account(s, args.user_id).id)
        report = service.run_due(db, as_of, account_id=account_id, events=Events.of(get_settings()))
    finally:
        db.dispose()
    day = (as_of or service.today()).isoformat()
    out = {"as_of": day, "created": report.created, "refused": report.refused}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"Schedules as of {day}: {report.created} impacts created, {report.refused} refused.")
    return 0


def add_schedules_parsers(sub: Any) -> None:
    schedules = sub.add_parser("schedules", help="monthly impact").add_subparsers(
        dest="schedules_command", required=True
    )

    def scoped(name: str, help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = schedules.add_parser(name, help=help_)
        parser.add_argument("--user-id", required=True)
        parser.add_argument("--env", choices=["production", "sandbox"], default="production")
        parser.add_argument("--json", action="store_true")
        return parser

    scoped("list", "an account's schedules").set_defaults(func=cmd_list)
    create = scoped("create", "create an impact every month")
    create.add_argument(
        "--impact-type",
        required=True,
        choices=[
            "tree_planted",
            "waste_removed",
            "carbon_captured",
            "coral_restored",
            "money_donated",
        ],
    )
    create.add_argument("--amount", type=int, required=True)
    create.add_argument("--day-of-month", type=int, required=True, help="1-28 (UTC)")
    create.add_argument("--starts-on", required=True, help="YYYY-MM-DD")
    create.add_argument("--ends-on", help="YYYY-MM-DD")
    create.add_argument("--category")
    create.add_argument("--customer-email")
    create.add_argument("--customer-name")
    create.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    create.set_defaults(func=cmd_create)
    for name, func, help_ in (
        ("pause", cmd_pause, "stop new periods (the months while paused are skipped)"),
        ("resume", cmd_resume, "start again from today"),
        ("delete", cmd_delete, "stop for good"),
    ):
        parser = scoped(name, help_)
        parser.add_argument("schedule_id")
        parser.set_defaults(func=func)
    run = schedules.add_parser("run", help="create every due period's impact (the worker's pass)")
    run.add_argument("--as-of", help="YYYY-MM-DD (default today, UTC)")
    run.add_argument("--user-id", help="only this account's schedules")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_run)
