"""``openimpact lifecycle ...`` and ``openimpact accounts projects``: the
operator's command line, running the same services as ``/admin/v1``."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from openimpact.commandline import open_database
from openimpact.config import get_settings
from openimpact.errors import ValidationFailed, describe_validation_errors
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle import assignment, schemas
from openimpact.lifecycle.service import (
    DEFAULT_CHUNK,
    STAGE_LABELS,
    STAGES,
    ChunkReport,
    impact_history,
    lifecycle_status,
    run_batch,
)
from openimpact.outbox.service import Events


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:80]
    except (KeyError, OSError):  # no user name in this environment (some containers)
        return "cli"


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """The API's own request models check the command line's values too."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_errors(list(exc.errors()))) from None


def _tracking_ids(args: argparse.Namespace) -> list[str] | None:
    ids = list(args.tracking_id or [])
    if args.tracking_ids_file:
        try:
            text = Path(args.tracking_ids_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationFailed(f"--tracking-ids-file: cannot read it: {exc}") from None
        ids += [
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]
    return ids or None


def _count_text(by_type: dict[str, int]) -> str:
    return ", ".join(f"{key} {count:,}" for key, count in by_type.items())


def cmd_lifecycle_batch(args: argparse.Namespace) -> int:
    action = args.lifecycle_action
    selection = {
        "env": args.env,
        "user_id": args.user_id,
        "impact_type": args.type,
        "category": args.category,
        "start_date": args.start_date,
        "end_date": args.end_date,
        "stage": args.stage,
        "project_id": args.project,
        "tracking_ids": _tracking_ids(args),
        "all": args.all or None,
    }
    body: dict[str, Any] = {
        "selection": {k: v for k, v in selection.items() if v is not None},
        "dry_run": args.dry_run,
        "chunk_size": args.chunk_size,
    }
    model: type[schemas.BatchBase] = schemas.BatchIn
    if action == "transfer":
        model, body["project_id"] = schemas.TransferIn, args.assign_project
    elif action == "complete":
        model = schemas.CompleteIn
        body.update(impact_video=args.video, live_session_date=args.live_session, notes=args.notes)
    request = _validated(model, body)
    options = request.options() if action == "complete" else None

    def progress(chunk: ChunkReport) -> None:
        if not args.json:
            print(f"  chunk {chunk.index}: {chunk.changed:,} changed", flush=True)

    db = open_database()
    try:
        report = run_batch(
            db,
            action,
            request.selection.to_selection(),
            actor=_actor(),
            dry_run=request.dry_run,
            chunk_size=request.chunk_size,
            project_id=getattr(request, "project_id", None),
            options=options,
            on_chunk=progress,
            events=Events.of(get_settings()),
        )
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(report))
        return 0
    move = f"{report['from_stage']} → {report['to_stage']}"
    skipped = report["skipped"]
    skipped_text = f"; skipped: {_count_text(skipped)}" if skipped else ""
    if report["dry_run"]:
        print(
            f"Dry run, {action} ({move}): would change {report['would_change']:,} of "
            f"{report['matched']:,} matched {report['env']} impacts{skipped_text}."
        )
    else:
        print(
            f"{action} ({move}): changed {report['changed']:,} of {report['matched']:,} "
            f"matched {report['env']} impacts in {len(report['chunks'])} chunk(s){skipped_text}."
        )
    if report["by_type"]:
        print(f"  by type: {_count_text(report['by_type'])}")
    if report.get("by_project"):
        print(f"  by project: {_count_text(report['by_project'])}")
    if report.get("not_found"):
        example = report["not_found"][0]
        print(f"  {report['not_found_count']:,} tracking id(s) not found, e.g. {example}")
    if not report["dry_run"]:
        print(f"  batch id: {report['batch_id']}")
    return 0


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds % 60:02d}s"


def cmd_lifecycle_status(args: argparse.Namespace) -> int:
    db = open_database()
    try:
        status = db.run_sync(lifecycle_status, args.env)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(status))
        return 0
    print(f"Lifecycle of {status['env']} impacts")
    for entry in status["stages"]:
        line = f"  {entry['label']:<24}{entry['total']:>10,}"
        if entry["by_type"]:
            line += f"   ({_count_text(entry['by_type'])})"
        print(line)
        oldest = entry.get("oldest")
        if oldest:
            print(
                f"  {'':<24}{'':>10}   oldest: {oldest['tracking_id']}, waiting "
                f"{_duration(oldest['waiting_seconds'])} (since {oldest['since']})"
            )
    cancelled = status["cancelled"]
    line = f"  {'Cancelled':<24}{cancelled['total']:>10,}"
    if cancelled["by_type"]:
        line += f"   ({_count_text(cancelled['by_type'])})"
    print(line)
    return 0


def cmd_lifecycle_history(args: argparse.Namespace) -> int:
    db = open_database()
    try:
        history = db.run_sync(impact_history, args.tracking_id, args.env)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(history))
        return 0
    print(f"{history['tracking_id']} ({history['env']}): {STAGE_LABELS[history['stage']]}")
    for row in history["transitions"]:
        print(
            f"  {row['at']}  {row['from_stage']} → {row['to_stage']}  by {row['actor']}  "
            f"batch {row['batch_id']}"
        )
    if "cancelled_on" in history:
        print(f"  cancelled on {history['cancelled_on']}")
    return 0


def cmd_accounts_projects(args: argparse.Namespace) -> int:
    overrides: dict[str, str] = {}
    for item in args.set or []:
        key, sep, project_id = item.partition("=")
        if not sep or not key.strip() or not project_id.strip():
            raise ValidationFailed(f"--set: '{item}' must look like KEY=PROJECT_ID")
        overrides[key.strip()] = project_id.strip()
    db = open_database()
    try:
        if overrides or args.unset or args.clear:
            found = db.run_sync(
                lambda s: assignment.set_overrides(
                    s, args.user_id, overrides, replace=args.clear, unset=tuple(args.unset or ())
                ),
                write=True,
            )
        else:
            found = db.run_sync(assignment.get_overrides, args.user_id)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps({"user_id": args.user_id, "project_overrides": found}))
    elif not found:
        print(f"{args.user_id}: no project overrides; the assignment rules apply.")
    else:
        print(f"{args.user_id}: project overrides")
        for key, project_id in found.items():
            print(f"  {key:<32} {project_id}")
    return 0


def add_lifecycle_parsers(sub: Any) -> None:
    lifecycle = sub.add_parser(
        "lifecycle", help="move impacts through their lifecycle; report progress"
    ).add_subparsers(dest="lifecycle_action", required=True)
    helps = {
        "receive": "Donation Received: funds for the selected Initiated impacts arrived",
        "transfer": "Transferred to Partner: funds went to each impact's partner project",
        "complete": "Completed: the partner executed the work; certificates become final",
    }
    for action, text in helps.items():
        parser = lifecycle.add_parser(action, help=text, description=text)
        group = parser.add_argument_group("selection (criteria combine with AND)")
        group.add_argument("--env", choices=["production", "sandbox"], default="production")
        group.add_argument("--user-id", help="one account")
        group.add_argument("--type", choices=RECORD_KEYS, help="one impact type")
        group.add_argument("--category", help="food, or a donation's cause")
        group.add_argument("--stage", choices=STAGES, help="current stage")
        group.add_argument("--project", help="assigned project (complete only)")
        group.add_argument(
            "--from", dest="start_date", metavar="YYYY-MM-DD", help="initiated on or after"
        )
        group.add_argument(
            "--to", dest="end_date", metavar="YYYY-MM-DD", help="initiated on or before"
        )
        group.add_argument(
            "--tracking-id", action="append", metavar="ID", help="repeatable: user_id-time_utc"
        )
        group.add_argument("--tracking-ids-file", metavar="PATH", help="one tracking id a line")
        group.add_argument("--all", action="store_true", help="every impact of the environment")
        parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        if action == "transfer":
            parser.add_argument(
                "--assign-project", metavar="PROJECT_ID", help="instead of the assignment rules"
            )
        if action == "complete":
            parser.add_argument("--video", metavar="URL", help="video of the work")
            parser.add_argument(
                "--live-session", metavar="ISO_TIME", help="food trees' live planting session"
            )
            parser.add_argument("--notes", help="completion notes from the partner")
        parser.set_defaults(func=cmd_lifecycle_batch)

    status = lifecycle.add_parser("status", help="impacts per stage, and the oldest waiting")
    status.add_argument("--env", choices=["production", "sandbox"], default="production")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_lifecycle_status)

    history = lifecycle.add_parser("history", help="the transition log of one impact")
    history.add_argument("tracking_id")
    history.add_argument("--env", choices=["production", "sandbox"], default="production")
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=cmd_lifecycle_history)


def add_account_projects_parser(accounts: Any) -> None:
    projects = accounts.add_parser(
        "projects",
        help="show or set the projects an account's impacts are assigned to",
        description="Keys: tree_planted, waste_removed, carbon_captured, coral_restored, "
        "money_donated, tree_planted:food, money_donated:<cause>.",
    )
    projects.add_argument("--user-id", required=True)
    projects.add_argument("--set", action="append", metavar="KEY=PROJECT_ID")
    projects.add_argument("--unset", action="append", metavar="KEY")
    projects.add_argument("--clear", action="store_true", help="drop all overrides first")
    projects.add_argument("--json", action="store_true")
    projects.set_defaults(func=cmd_accounts_projects)
