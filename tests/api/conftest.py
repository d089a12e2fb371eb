"""The ``lan`` fixture for the socket API tests (see apilan.py), and
``program_net``: stack A as a program sees it, in-process or attached."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from apilan import Lan, make_lan

from femtotcp.api.network import Network
from femtotcp.api.remote import RemoteNetwork
from femtotcp.control.sockets import SocketService


@pytest.fixture
def lan() -> Iterator[Lan]:
    with make_lan() as lan_:
        yield lan_


@pytest.fixture(params=["in-process", "attached"])
def program_net(request: pytest.FixtureRequest, lan: Lan) -> Iterator[Network]:
    """Stack A as a program sees it: in this process, or through serve's service."""
    if request.param == "in-process":
        yield lan.net_a
        return
    d = tempfile.mkdtemp(prefix="ftid")
    service = SocketService(lan.a, lan.runtime, os.path.join(d, "s.sockets")).start()
    try:
        yield RemoteNetwork(service.path)
    finally:
        service.close()
        os.rmdir(d)
