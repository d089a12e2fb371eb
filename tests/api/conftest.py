"""The ``lan`` fixture for the socket API tests (see apilan.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apilan import Lan, make_lan


@pytest.fixture
def lan() -> Iterator[Lan]:
    with make_lan() as lan_:
        yield lan_
