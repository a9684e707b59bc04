"""Imports every table so that ``Base.metadata`` (and Alembic) sees them all."""

from openimpact.accounts.models import Account, ApiKey, Ledger, ServerSecret
from openimpact.customers.models import Customer
from openimpact.db import Base
from openimpact.impacts.models import DailyImpact, IdempotencyRecord, Impact
from openimpact.lifecycle.models import ImpactTransition
from openimpact.notifications.models import OutboxMessage
from openimpact.projects.models import Cause, Partner, Project, Sdg
from openimpact.public.models import CustomerPage, PublicProfile
from openimpact.users.models import User, UserSession, UserToken

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "Cause",
    "Customer",
    "CustomerPage",
    "DailyImpact",
    "IdempotencyRecord",
    "Impact",
    "ImpactTransition",
    "Ledger",
    "OutboxMessage",
    "Partner",
    "Project",
    "PublicProfile",
    "Sdg",
    "ServerSecret",
    "User",
    "UserSession",
    "UserToken",
]
