from __future__ import annotations

from collections.abc import Iterator

import pytest

from openimpact.config import Settings
from tests.conftest import TestDatabase
from tests.webhooks.receiver import Receiver, running


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    # The receiver listens on 127.0.0.1; retries come within milliseconds.
    return database.settings(webhooks_allow_private=True, webhook_retry_scale=0.00001)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with running() as receiver:
        yield receiver
