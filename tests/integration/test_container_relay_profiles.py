"""``python -m container`` on a khatru-like relay (tests/relay_profiles.py): an answer nobody
is listening for is muted, re-sent as a stored 1059 wrap, and the job goes on (issue 10: the
container used to take the ``mute:`` as a failed publish and destroy itself).

The harness (launcher, simulated PSP, requester) is tests/integration/test_container_job.py's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestation.simulated import SimulatedChain, mint_chain
from dvm.relay import RelayPool

from .conftest import RelayFactory
from .test_container_job import Job, Requester, assert_clean, start_job, tensor

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]


@pytest.fixture(scope="module")
def sim_chain() -> SimulatedChain:
    return mint_chain(now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    for job in started:
        if job.process.poll() is None:
            job.process.kill()
            job.process.communicate(timeout=10)


async def test_a_muted_answer_goes_again_as_a_stored_wrap(
    tmp_path: Path, relay_factory: RelayFactory, sim_chain: SimulatedChain, jobs: list[Job]
) -> None:
    relay = relay_factory(profile="khatru")
    job = start_job(tmp_path, relay, sim_chain, params=(("mode", "oneshot"),))
    jobs.append(job)
    async with RelayPool([relay.url]) as pool:
        requester = Requester(pool, job, sim_chain)
        await requester.attestation()
        # Not subscribed to our wraps: the container's 21059 answer finds no listener.
        input_id = await requester.send_input(tensor([1.5, 2.0]))
        result = await requester.result()
        await requester.open()  # now the stored 1059 copies arrive
        text, kind = await requester.answer(input_id)
    assert kind == 1059
    assert result == text
    assert json.loads(text)["outputs"]["y"]["data"] == [3.0, 4.0]
    assert await asyncio.to_thread(job.finish) == 0
    assert job.status_lines[-1]["reason"] == "oneshot"
    assert "re-sent as kind 1059" in job.stderr.decode()
    assert_clean(job)
