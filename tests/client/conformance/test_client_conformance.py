"""rxsse's EventSource passes every case of the conformance suite, driven through its test
service over HTTP as any client would be."""

from __future__ import annotations

import pytest

from tests.client.conformance import httpx_sse_service
from tests.client.conformance.harness import BASIC, Case, harness, load_cases
from tests.client.conformance.rxsse_service import CAPABILITIES, create_app

CASES = load_cases()


def test_the_suite_has_cases_for_every_capability_rxsse_claims():
    assert {case.capability for case in CASES} == {BASIC, *CAPABILITIES}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_rxsse_passes(serve, case: Case):
    service = await serve(create_app())
    async with harness(service.base_url) as runner:
        assert {case.capability, *case.requires} <= await runner.capabilities() | {BASIC}
        await runner.run(case)


def case_named(name: str) -> Case:
    (case,) = [case for case in CASES if case.name == name]
    return case


async def test_the_harness_drives_another_client_and_catches_its_mistakes(serve):
    # httpx-sse, through its own test service: it reads a plain event, but dispatches an event
    # for a block without data (the WHATWG rules dispatch nothing; its id still counts).
    service = await serve(httpx_sse_service.create_app())
    async with harness(service.base_url) as runner:
        await runner.run(case_named("one-line message in one chunk"))
        with pytest.raises(AssertionError, match="'type': 'nothing'"):
            await runner.run(case_named("no data, no event"))
