"""Imports every table so that ``Base.metadata`` (and Alembic) sees them all."""

from openimpact.accounts.models import Account, ApiKey, Ledger, ServerSecret
from openimpact.budgets.models import Budget, BudgetMonth, ImpactPrice
from openimpact.customers.models import Customer
from openimpact.db import Base
from openimpact.impacts.models import DailyImpact, IdempotencyRecord, Impact
from openimpact.lifecycle.models import ImpactTransition
from openimpact.outbox.models import OutboxMessage
from openimpact.plans.models import Plan, PlanPeriod
from openimpact.projects.models import Cause, Partner, Project, Sdg
from openimpact.public.models import CustomerPage, PublicProfile
from openimpact.schedules.models import Schedule, SchedulePeriod
from openimpact.users.models import User, UserSession, UserToken
from openimpact.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "Budget",
    "BudgetMonth",
    "Cause",
    "Customer",
    "CustomerPage",
    "DailyImpact",
    "IdempotencyRecord",
    "Impact",
    "ImpactPrice",
    "ImpactTransition",
    "Ledger",
    "OutboxMessage",
    "Partner",
    "Plan",
    "PlanPeriod",
    "Project",
    "PublicProfile",
    "Schedule",
    "SchedulePeriod",
    "Sdg",
    "ServerSecret",
    "User",
    "UserSession",
    "UserToken",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
]
