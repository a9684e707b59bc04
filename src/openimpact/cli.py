"""The ``openimpact`` command: serve, accounts, keys, projects, lifecycle, worker."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from openimpact.budgets.commands import add_account_budget_parsers, add_prices_parsers
from openimpact.commandline import in_transaction, open_database
from openimpact.config import get_settings
from openimpact.db import Database
from openimpact.errors import OpenImpactError
from openimpact.lifecycle.commands import add_account_projects_parser, add_lifecycle_parsers
from openimpact.migrate import prepare_database
from openimpact.plans.commands import add_account_plan_parsers, add_plans_parsers
from openimpact.public.commands import add_account_public_parsers
from openimpact.schedules.commands import add_schedules_parsers
from openimpact.users.commands import add_users_parsers


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=None, separators=(", ", ": ")))


# serve ---------------------------------------------------------------------


def _at_least_one(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def cmd_serve(args: argparse.Namespace) -> int:
    from openimpact import serving

    settings = get_settings()
    url = settings.sqlalchemy_url
    prepare_database(url)
    if args.demo:
        from openimpact.demo import create_demo

        db = Database(url, pool_size=2)
        try:
            created = create_demo(db)
        finally:
            db.dispose()
        base = f"http://{args.host}:{args.port}"
        if created is None:
            print("Demo: the store already has an account; keeping it as it is.")
        else:
            print("Dashboard (sign in with the email and password below):")
            print(f"  {base}/dashboard/login")
            print(f"  email           {created['dashboard_email']}")
            print(f"  password        {created['dashboard_password']}")
            print()
            print("Demo account created (keys and password are shown only this once):")
            print(f"  user_id         {created['user_id']}")
            print(f"  sandbox key     {created['sandbox_key']}")
            print(f"  production key  {created['production_key']}")
            print()
            print("Try:")
            print(f"  curl -s {base}/v1/impact -H 'x-api-key: {created['production_key']}'")
            print(
                f"  curl -s -X POST {base}/v1/plant_tree -H 'content-type: application/json' "
                f"-H 'x-api-key: {created['sandbox_key']}' -d '{{\"amount\": 5}}'"
            )
            print(f"  open {base}/docs")
            print(f"  open {base}/certificate/{created['completed_tracking_id']}")
            print(f"  open {base}/impact/{created['profile_slug']}   (the public profile)")
        sys.stdout.flush()
    serving.run(
        "openimpact.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        loop="auto",
        http="auto",
        proxy_headers=True,
        server_header=False,
    )
    return 0


# accounts and keys -------------------------------------------------------


def cmd_accounts_create(args: argparse.Namespace) -> int:
    from openimpact.accounts.service import create_account

    def create(session: Any) -> dict[str, str]:
        account, keys = create_account(session, email=args.email, name=args.name)
        return {
            "user_id": account.user_id,
            "email": account.email,
            "sandbox_key": keys["sandbox"].key,
            "production_key": keys["production"].key,
        }

    result = in_transaction(create)
    if args.json:
        _print_json(result)
    else:
        print(f"Account {result['user_id']} ({result['email']}) created.")
        print(f"  sandbox key:    {result['sandbox_key']}")
        print(f"  production key: {result['production_key']}")
        print("Keys are shown only once; store them now.")
    return 0


def cmd_accounts_causes(args: argparse.Namespace) -> int:
    from openimpact.accounts.service import get_account, set_causes

    causes = [c.strip() for c in args.causes.split(",") if c.strip()]

    def update(session: Any) -> list[str]:
        account = get_account(session, args.user_id)
        set_causes(session, account, causes)
        return list(account.causes)

    print("Causes: " + ", ".join(in_transaction(update)))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from openimpact.accounts.service import create_key, get_account

    def create(session: Any) -> dict[str, str]:
        issued = create_key(session, get_account(session, args.user_id), args.env)
        return {
            "user_id": issued.user_id,
            "env": issued.env,
            "key": issued.key,
            "prefix": issued.prefix,
        }

    result = in_transaction(create)
    if args.json:
        _print_json(result)
    else:
        print(f"{result['env']} key for {result['user_id']}: {result['key']}")
        print("It is shown only once; store it now.")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from openimpact.accounts.service import get_account, list_keys
    from openimpact.timeutil import ms_to_iso

    def listing(session: Any) -> list[dict[str, Any]]:
        return [
            {
                "prefix": k.prefix,
                "env": k.env,
                "created": ms_to_iso(k.created_ms),
                "revoked": ms_to_iso(k.revoked_ms) if k.revoked_ms else None,
            }
            for k in list_keys(session, get_account(session, args.user_id))
        ]

    rows = in_transaction(listing)
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        state = f"revoked {row['revoked']}" if row["revoked"] else "active"
        print(f"{row['prefix']}…  {row['env']:<10}  created {row['created']}  {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from openimpact.accounts.service import revoke_key

    key = in_transaction(revoke_key, args.prefix.rstrip("…"))
    print(f"Key {key.prefix}… revoked.")
    return 0


# projects ----------------------------------------------------------------


def cmd_projects_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from openimpact.projects.service import import_catalogue, load_catalogue_file

    catalogue = load_catalogue_file(Path(args.file))
    counts = in_transaction(import_catalogue, catalogue)
    print("Imported " + ", ".join(f"{n} {what}" for what, n in counts.items()) + ".")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from openimpact.worker import run_forever, run_once

    settings = get_settings()
    db = open_database()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(message)s")
    try:
        if args.once:
            _print_json(run_once(db, settings))
            return 0
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        every = settings.worker_interval_seconds
        print(f"Worker running, a pass every {every:g} s; Ctrl-C stops it.")
        sys.stdout.flush()
        run_forever(db, settings, stop)
    finally:
        db.dispose()
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    prepare_database(get_settings().sqlalchemy_url)
    print("Database is at the latest schema.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openimpact", description="Open, self-hostable server for the impact API v1."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="worker processes; with more than one, each listens on a socket of its own "
        "(Linux), so connections are spread over them",
    )
    serve.add_argument("--demo", action="store_true", help="create a demo account if none exists")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=cmd_migrate)

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create = accounts.add_parser("create", help="create an account with one key per environment")
    create.add_argument("--email", required=True)
    create.add_argument("--name")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_accounts_create)
    causes = accounts.add_parser("causes", help="set the causes an account may donate to")
    causes.add_argument("--user-id", required=True)
    causes.add_argument("--causes", required=True, help="comma-separated; the first is the default")
    causes.set_defaults(func=cmd_accounts_causes)
    add_account_projects_parser(accounts)
    add_account_public_parsers(accounts)
    add_account_budget_parsers(accounts)
    add_account_plan_parsers(accounts)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    kcreate = keys.add_parser("create", help="issue a new key")
    kcreate.add_argument("--user-id", required=True)
    kcreate.add_argument("--env", required=True, choices=["sandbox", "production"])
    kcreate.add_argument("--json", action="store_true")
    kcreate.set_defaults(func=cmd_keys_create)
    klist = keys.add_parser("list", help="list an account's keys (prefixes only)")
    klist.add_argument("--user-id", required=True)
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=cmd_keys_list)
    krevoke = keys.add_parser("revoke", help="revoke a key by its visible prefix")
    krevoke.add_argument("prefix")
    krevoke.set_defaults(func=cmd_keys_revoke)

    projects = sub.add_parser("projects", help="manage the projects catalogue").add_subparsers(
        dest="action", required=True
    )
    pimport = projects.add_parser("import", help="replace the catalogue with a JSON file")
    pimport.add_argument("file")
    pimport.set_defaults(func=cmd_projects_import)

    add_lifecycle_parsers(sub)
    add_users_parsers(sub)
    add_schedules_parsers(sub)
    add_prices_parsers(sub)
    add_plans_parsers(sub)
    worker = sub.add_parser(
        "worker", help="run the background worker (sandbox simulation, emails, cleanup)"
    )
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except OpenImpactError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
