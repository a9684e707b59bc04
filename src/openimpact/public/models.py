"""Tables of the public impact surfaces.

The totals they show are not stored here: they are the production row of
``ledgers`` (accounts/models.py), kept current by every impact write and
cancel. What is stored here is what the account chooses to publish and the
customers' private page links.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, table
from openimpact.impacts.models import Impact


class PublicProfile(Base):
    """One row per account that configured its public profile.

    ``slug`` is stored lower-cased (the service normalizes it), which makes
    the unique constraint case-insensitive on every database.
    """

    __tablename__ = "public_profiles"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    slug: Mapped[str | None] = mapped_column(String(40), unique=True)
    # The display name; the account's name when unset.
    name: Mapped[str | None] = mapped_column(String(200))
    logo_url: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class CustomerPage(Base):
    """The private page link of one customer (``/my-impact/{token}``).

    The token is a random 192-bit value stored as it is, not hashed: the
    business must be able to show the link again (dashboard, emails), and a
    hash would only protect it from someone who can read this table, who can
    also read the ``server_secrets`` any derived scheme would need. Rotating
    replaces the token, so the old link stops working at once.
    """

    __tablename__ = "customer_pages"

    customer_pk: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


# Two partial indexes on impacts, for the profile page (they belong to this
# domain's reads, so they are declared here; Alembic sees them through
# openimpact.models). Partial, so that recording an impact, when both columns
# are still NULL, never touches them: the write path stays as it was.
#   - which projects received an account's impacts: one seek per project;
#   - the latest completed certificates: the first rows of one range.
_impacts = table(Impact)
Index(
    None,
    _impacts.c.account_id,
    _impacts.c.env,
    _impacts.c.project_id,
    sqlite_where=_impacts.c.project_id.is_not(None),
    postgresql_where=_impacts.c.project_id.is_not(None),
)
Index(
    None,
    _impacts.c.account_id,
    _impacts.c.env,
    _impacts.c.completed_ms,
    sqlite_where=_impacts.c.completed_ms.is_not(None),
    postgresql_where=_impacts.c.completed_ms.is_not(None),
)
