"""rxsse's EventSource passes every case of the conformance suite, driven through its test
service over HTTP as any client would be."""

from __future__ import annotations

import pytest

from tests.client_conformance.harness import BASIC, Case, harness, load_cases
from tests.client_conformance.rxsse_service import CAPABILITIES, create_app

CASES = load_cases()


def test_the_suite_has_cases_for_every_capability_rxsse_claims():
    assert {case.capability for case in CASES} == {BASIC, *CAPABILITIES}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_rxsse_passes(serve, case: Case):
    service = await serve(create_app())
    async with harness(service.base_url) as runner:
        assert {case.capability, *case.requires} <= await runner.capabilities() | {BASIC}
        await runner.run(case)
