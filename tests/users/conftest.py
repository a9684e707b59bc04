"""The dashboard's fixtures serve the users tests too."""

from tests.dashboard.conftest import _cheap_argon2, apps, client  # noqa: F401 (fixtures)
