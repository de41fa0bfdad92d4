"""The commands' tests run the micro engine, as the app's do, and never reach OpenAI."""

import pytest

from tests.app.conftest import micro_engine  # noqa: F401  (the fixture, for this package)


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
