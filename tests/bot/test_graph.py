"""Entra group roles through a loopback fake Microsoft Graph, with msal tokens from a local HTTPS fake Entra."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.directory import LiveDirectory
from bot.graph import GraphGroups, GraphToken
from skills.core.types import User
from tests.bot.conftest import serve
from tests.bot.test_entra import TENANT, FakeEntra

ICU_NURSES = "0b5c2f3a-1111-4222-8333-444455556666"
CHARGE_NURSES = "0b5c2f3a-1111-4222-8333-444455556667"
KIM = "6a0f3b1e-0000-4000-8000-000000000001"
NEWCOMER = "6a0f3b1e-0000-4000-8000-000000000009"


@dataclass
class FakeGraph:
    """`POST /v1.0/users/{id}/checkMemberGroups` over memberships set by the test; `fail_next` scripts errors."""

    members: dict[str, set[str]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    requests: list[tuple[str, list[str]]] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1.0/users/{user}/checkMemberGroups", self._check)
        return app

    async def _check(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = request.match_info["user"]
        self.requests.append((user, list(body["groupIds"])))
        if request.headers.get("Authorization") != "Bearer entra-token-1":
            return web.json_response({"error": {"code": "InvalidAuthenticationToken"}}, status=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": {"code": "scripted"}}, status=status, headers={"Retry-After": "120"})
        if user not in self.members:
            return web.json_response({"error": {"code": "Request_ResourceNotFound"}}, status=404)
        return web.json_response({"value": [g for g in body["groupIds"] if g in self.members[user]]})


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[FakeEntra]:
    fake = FakeEntra(tmp_path)
    yield fake
    fake.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    runner, url = await serve(fake.app())
    fake.url = url
    yield fake
    await runner.cleanup()


def groups_client(entra: FakeEntra, graph: FakeGraph, ticks: Ticks, secret: str = "s3cret") -> GraphGroups:
    token = GraphToken(
        "wardline-app", secret, f"{entra.url}/{TENANT}", http_client=entra.session(), instance_discovery=False
    )
    return GraphGroups(token, base_url=graph.url, cache_s=900, timeout_s=0.5, monotonic=ticks)


async def test_memberships_come_from_graph_with_an_app_token_and_are_cached(entra: FakeEntra, graph: FakeGraph) -> None:
    graph.members[KIM] = {ICU_NURSES}
    ticks = Ticks()
    groups = groups_client(entra, graph, ticks)
    assert await groups.member_of(KIM, [ICU_NURSES, CHARGE_NURSES]) == {ICU_NURSES}
    assert await groups.member_of(KIM, [ICU_NURSES, CHARGE_NURSES]) == {ICU_NURSES}
    assert len(graph.requests) == 1, "the second answer came from the cache"
    assert sorted(graph.requests[0][1]) == sorted([ICU_NURSES, CHARGE_NURSES])
    [token_request] = entra.token_requests
    assert token_request["grant_type"] == ["client_credentials"]
    assert token_request["scope"] == ["https://graph.microsoft.com/.default"]

    graph.members[KIM] = {CHARGE_NURSES}  # moved between groups in Entra
    ticks.now += 899
    assert await groups.member_of(KIM, [ICU_NURSES, CHARGE_NURSES]) == {ICU_NURSES}
    ticks.now += 2
    assert await groups.member_of(KIM, [ICU_NURSES, CHARGE_NURSES]) == {CHARGE_NURSES}
    assert len(graph.requests) == 2
    assert await groups.member_of(NEWCOMER, [ICU_NURSES]) == frozenset(), "unknown in the tenant: no groups"
    await groups.close()


async def test_when_graph_fails_known_roles_stay_and_nobody_gains_one(entra: FakeEntra, graph: FakeGraph) -> None:
    graph.members = {KIM: {ICU_NURSES}, NEWCOMER: {ICU_NURSES}}
    ticks = Ticks()
    groups = groups_client(entra, graph, ticks)
    assert await groups.member_of(KIM, [ICU_NURSES]) == {ICU_NURSES}
    ticks.now += 901
    graph.fail_next = [503, 503]
    assert await groups.member_of(KIM, [ICU_NURSES]) == {ICU_NURSES}, "kept while Graph is down"
    assert await groups.member_of(NEWCOMER, [ICU_NURSES]) == frozenset(), "not granted while Graph is down"
    assert len(graph.fail_next) == 1, "after a failure, calls pause (30 s) instead of each waiting for a timeout"
    ticks.now += 31
    assert await groups.member_of(NEWCOMER, [ICU_NURSES]) == frozenset(), "still down: still not granted"
    assert await groups.member_of(KIM, [ICU_NURSES, CHARGE_NURSES]) == {ICU_NURSES}, "a new group is not granted"
    assert len(graph.fail_next) == 0
    ticks.now += 31
    assert await groups.member_of(NEWCOMER, [ICU_NURSES]) == {ICU_NURSES}, "granted once Graph confirms it"
    await groups.close()


async def test_a_429_pauses_graph_calls_for_its_retry_after(entra: FakeEntra, graph: FakeGraph) -> None:
    graph.members = {KIM: {ICU_NURSES}}
    ticks = Ticks()
    groups = groups_client(entra, graph, ticks)
    graph.fail_next = [429]
    assert await groups.member_of(KIM, [ICU_NURSES]) == frozenset()
    calls = len(graph.requests)
    assert await groups.member_of(KIM, [ICU_NURSES]) == frozenset()
    assert len(graph.requests) == calls, "no call before Retry-After (120 s) has passed"
    ticks.now += 121
    assert await groups.member_of(KIM, [ICU_NURSES]) == {ICU_NURSES}
    await groups.close()


async def test_a_slow_graph_times_out_and_a_bad_token_grants_nothing(entra: FakeEntra, graph: FakeGraph) -> None:
    graph.members = {KIM: {ICU_NURSES}}
    graph.delay_s = 2.0
    ticks = Ticks()
    slow = groups_client(entra, graph, ticks)
    started = asyncio.get_running_loop().time()
    assert await slow.member_of(KIM, [ICU_NURSES]) == frozenset()
    assert asyncio.get_running_loop().time() - started < 1.9, "the request timeout (0.5 s) bounds the wait"
    started = asyncio.get_running_loop().time()
    assert await slow.member_of(KIM, [ICU_NURSES]) == frozenset()
    assert asyncio.get_running_loop().time() - started < 0.1, "the next message does not wait again"
    await slow.close()
    graph.delay_s = 0
    refused = groups_client(entra, graph, ticks, secret="wrong")
    assert await refused.member_of(KIM, [ICU_NURSES]) == frozenset()
    await refused.close()


async def test_more_than_twenty_groups_are_asked_in_chunks(entra: FakeEntra, graph: FakeGraph) -> None:
    many = [f"0b5c2f3a-1111-4222-8333-{n:012d}" for n in range(25)]
    graph.members = {KIM: {many[3], many[22]}}
    groups = groups_client(entra, graph, Ticks())
    assert await groups.member_of(KIM, many) == {many[3], many[22]}
    assert [len(ids) for _, ids in graph.requests] == [20, 5]
    await groups.close()


async def test_concurrent_lookups_for_one_user_share_one_call(entra: FakeEntra, graph: FakeGraph) -> None:
    graph.members = {KIM: {ICU_NURSES}}
    graph.delay_s = 0.1
    groups = groups_client(entra, graph, Ticks())
    answers = await asyncio.gather(*(groups.member_of(KIM, [ICU_NURSES]) for _ in range(5)))
    assert answers == [{ICU_NURSES}] * 5
    assert len(graph.requests) == 1
    await groups.close()


async def test_directory_groups_add_roles_and_units(tmp_path: Path, entra: FakeEntra, graph: FakeGraph) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(
        f"""
[units.7W]
[units.ICU]

[[staff]]
aad_object_id = "{KIM}"
roles = ["nurse"]
units = ["7W"]

[[groups]]
entra_group_id = "{ICU_NURSES}"
roles = ["nurse"]
units = ["ICU"]

[[groups]]
entra_group_id = "{CHARGE_NURSES.upper()}"
roles = ["charge"]
units = ["ICU"]
"""
    )
    graph.members = {KIM: {ICU_NURSES}, NEWCOMER: {CHARGE_NURSES}}
    live = LiveDirectory.open(path, groups=groups_client(entra, graph, Ticks()))
    kim: Any = await live.resolve(User(id="29:kim", aad_object_id=KIM))
    assert kim.roles == {"nurse"} and kim.units == {"7W", "ICU"}
    newcomer = await live.resolve(User(id="29:new", aad_object_id=NEWCOMER.upper()))
    assert newcomer.roles == {"charge"} and newcomer.units == {"ICU"}
    assert live.groups is not None
    await live.groups.close()  # type: ignore[attr-defined]
