"""The entry of one job: parse the spec, build the runtime, run it (docs/launch.md §1-§3).

Contract: :func:`run_job` takes the raw spec bytes and returns the exit code; it never raises
for a bad spec (exit 20, after a ``destroying`` status line) and leaves everything else to
:class:`~container.runtime.JobRuntime`. The evidence provider and the model loader are
parameters so tests can plug in fakes; the defaults are the spec's provider
(:func:`~container.evidence.provider_for`) and :func:`~container.runner.load_runner`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TextIO

from dvm.nostr.errors import NostrError
from dvm.nostr.nip90 import parse_job_request

from . import events as ev
from .errors import SpecError
from .evidence import EvidenceProvider, provider_for
from .launch import ExitCode, JobSpec, StatusKind, StatusLine, parse_job_spec
from .machine import JobMachine
from .runner import GenerationParams, Runner, load_runner
from .runtime import JobRuntime, RunnerLoader, StatusWriter

__all__ = ["ProviderFactory", "default_loader", "run_job"]

_log = logging.getLogger(__name__)

ProviderFactory = Callable[[JobSpec], EvidenceProvider]


def default_loader(spec: JobSpec, params: GenerationParams) -> Runner:
    """Check the model's sha256 and load it with the spec's runner."""
    return load_runner(spec.model, params=params)


async def run_job(
    raw_spec: bytes,
    *,
    status: TextIO,
    providers: ProviderFactory = provider_for,
    load: RunnerLoader = default_loader,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run one job from its raw spec; returns the exit code (docs/launch.md §3)."""
    writer = StatusWriter(status)
    try:
        spec = parse_job_spec(raw_spec)
        try:
            request = parse_job_request(spec.request)
        except NostrError as exc:
            raise SpecError(f"the request is not a cdvm job request: {exc}") from None
        params = GenerationParams.from_sources(
            spec.model.defaults, request.params, max_output_tokens=spec.limits.max_output_tokens
        )
        provider = providers(spec)
    except SpecError as exc:
        _log.error("job spec refused: %s", exc)
        machine = JobMachine()
        for action in machine.handle(ev.SpecRejected()):
            if isinstance(action, ev.Destroy):
                writer.write(StatusLine(StatusKind.DESTROYING, reason=action.reason))
        return int(machine.exit_code if machine.exit_code is not None else ExitCode.BAD_SPEC)
    runtime = JobRuntime(
        spec,
        request,
        params,
        status=writer,
        provider=provider,
        load=load,
        random_bytes=random_bytes,
        clock=clock,
    )
    return await runtime.run()
