"""The Kubernetes launcher: one Confidential Containers Pod per job (DESIGN §4, docs/deploy.md).

Uses the official ``kubernetes`` client (its blocking calls run in worker threads) behind the
node's :class:`~dvm.node.launcher.Launcher` protocol. The Pod itself is built by
:mod:`dvm.node.kubernetes.pod` (pure); this module only talks to the API server.

Contract:

* :meth:`KubernetesLauncher.check` refuses to start when a configured RuntimeClass does not
  exist (``kata-qemu-snp``, and the GPU class when one is configured).
* :meth:`KubernetesLauncher.launch` refuses a GPU TEE job when no GPU runtime class is
  configured and any TEE kind other than ``sev-snp``/``sev-snp+nvidia-h100`` (reason
  ``unsupported-tee``), creates the Pod, and returns once its container has **started**. Before
  that, every failure deletes the Pod, confirms the deletion, and raises
  :class:`KubernetesLaunchError` whose ``reason`` is the precise feedback reason: ``capacity``
  for a quota refusal or a Pod that stays unschedulable past ``schedule_timeout_s``;
  ``launch-failed`` for a forbidden create (RBAC), an invalid Pod, an image pull that keeps
  backing off past ``image_pull_timeout_s`` or a container that cannot be created (for example
  refused by the agent policy).
* :meth:`KubernetesJob.wait` follows the Pod (a watch wakes the loop; every decision reads the
  Pod afresh) until it finishes, then deletes it and reports ``destroyed`` only when a read
  returns 404. ``activeDeadlineSeconds`` (deadline + grace) is enforced by the kubelet
  (``DeadlineExceeded`` → killed); the launcher deletes the Pod itself if the kubelet has not
  ended it ``delete_timeout_s`` later.
* :meth:`KubernetesLauncher.collect_orphans` deletes every Pod labelled with this node that a
  previous run left (not only those in the ledger) and confirms each deletion.
* Under Confidential Containers the host cannot read the workload's stdout (the agent policy
  refuses ``ReadStreamRequest``): status lines come from a :class:`StatusSource` (the node's
  relay subscription to the job's kind-7100 attestation); without one there are none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from container.launch import EvidenceSource, JobSpec, StatusLine, build_job_spec
from dvm.cdvm.tee import is_gpu_job
from dvm.nostr.nip90 import ErrorReason, TeeKind

from ..errors import ConfigError, LaunchError
from ..launcher import ExitInfo, LaunchRequest
from .api import NETWORK_ERRORS, PodsApi, api_client_for, api_message
from .pod import (
    FATAL_WAITING,
    JOB_ID_ANNOTATION,
    MODELS_DIR,
    PULL_WAITING,
    KubernetesConfig,
    PodView,
    build_job_pod,
    node_selector,
    read_pod,
)

__all__ = [
    "KubernetesJob",
    "KubernetesLaunchError",
    "KubernetesLauncher",
    "StatusSource",
    "api_client_for",
]

_log = logging.getLogger(__name__)
_WATCH_WINDOW_S = 5.0


class KubernetesLaunchError(LaunchError):
    """A job Pod could not be started; ``reason`` is the ``error`` feedback reason."""

    def __init__(self, message: str, *, reason: ErrorReason = ErrorReason.LAUNCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


class StatusSource(Protocol):
    """Where a job's status lines come from when its stdout is sealed (see module docstring)."""

    def status_lines(self, launch: LaunchRequest) -> AsyncIterator[StatusLine]: ...


class KubernetesJob:
    """One job Pod (a :class:`~dvm.node.launcher.LaunchedJob`)."""

    def __init__(
        self,
        launcher: KubernetesLauncher,
        launch: LaunchRequest,
        name: str,
        status_source: StatusSource | None,
    ) -> None:
        self._launcher = launcher
        self._launch = launch
        self._name = name
        self._source = status_source
        self._killed = False
        self._monitor: asyncio.Task[ExitInfo] = asyncio.create_task(self._follow())

    @property
    def handle(self) -> str:
        return self._name

    async def status_lines(self) -> AsyncIterator[StatusLine]:
        if self._source is None:
            return
        lines = self._source.status_lines(self._launch).__aiter__()
        while not self._monitor.done():
            step = asyncio.ensure_future(lines.__anext__())
            await asyncio.wait({step, self._monitor}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return

    async def kill(self) -> None:
        self._killed = True
        with contextlib.suppress(*NETWORK_ERRORS):
            await asyncio.to_thread(self._launcher.pods.delete, self._name)

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._monitor)

    async def _follow(self) -> ExitInfo:
        cfg = self._launcher.config
        job_id = self._launch.job_id
        give_up = time.monotonic() + self._launch.kill_after_s
        give_up += cfg.delete_timeout_s
        view: PodView | None = None
        detail = ""
        while True:
            pod, error = await self._launcher.read(self._name)
            if pod is None and error is None:
                detail = "the pod was deleted while it ran"
                break
            if pod is not None:
                view = read_pod(pod)
                if view.finished:
                    break
            if time.monotonic() > give_up:
                _log.warning("job %s: pod still running past its deadline; deleting it", job_id)
                self._killed = True
                detail = "deadline + grace passed and the kubelet had not ended the pod"
                break
            await self._launcher.wait_change(self._name, pod)
        killed = self._killed or view is None or not view.finished
        code = None
        if view is not None and view.finished and not self._killed:
            if view.pod_reason == "DeadlineExceeded":
                killed = True
                detail = "activeDeadlineSeconds reached (DeadlineExceeded)"
            elif view.exit_code is None:
                killed = True
                detail = f"the pod failed without an exit code ({view.pod_reason or 'unknown'})"
            else:
                code = view.exit_code
        destroyed = await self._launcher.destroy(self._name, job_id=job_id)
        _log.info(
            "job %s: pod %s ended (%s), destroyed=%s",
            job_id,
            self._name,
            "killed" if killed else f"exit code {code}",
            destroyed,
        )
        return ExitInfo(
            exit_code=None if killed else code, killed=killed, destroyed=destroyed, detail=detail
        )


class KubernetesLauncher:
    """Starts each job in its own confidential Pod (a :class:`~dvm.node.launcher.Launcher`)."""

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        api_client: k8s_client.ApiClient,
        status_source: StatusSource | None = None,
        watch_window_s: float = _WATCH_WINDOW_S,
    ) -> None:
        self.config = config
        self.pods = PodsApi(api_client, config)
        self._api_client = api_client
        self._source = status_source
        self._window_s = watch_window_s

    # --- helpers shared with the jobs ---------------------------------------------------
    async def read(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The pod (None when gone) and an error text when the API could not be read."""
        try:
            return await asyncio.to_thread(self.pods.read, name), None
        except ApiException as exc:
            text = f"API error {exc.status}: {api_message(exc)}"
        except NETWORK_ERRORS as exc:
            text = f"API server unreachable: {type(exc).__name__}"
        _log.warning("pod %s: cannot read it (%s)", name, text)
        return {}, text

    async def wait_change(self, name: str, pod: dict[str, Any] | None) -> None:
        version = (pod or {}).get("metadata", {}).get("resourceVersion")
        try:
            await asyncio.to_thread(self.pods.wait_change, name, version, self._window_s)
        except (ApiException, *NETWORK_ERRORS):
            await asyncio.sleep(min(1.0, self._window_s))  # re-read; the next read reports it

    async def destroy(self, name: str, *, job_id: str) -> bool:
        """Delete the pod and confirm it is gone (a read answers 404) within the timeout."""
        deadline = time.monotonic() + self.config.delete_timeout_s
        while time.monotonic() < deadline:
            try:
                await asyncio.to_thread(self.pods.delete, name)
            except ApiException as exc:
                _log.warning("job %s: delete of pod %s refused: %s", job_id, name, api_message(exc))
            except NETWORK_ERRORS as exc:
                _log.warning(
                    "job %s: delete of pod %s failed: %s", job_id, name, type(exc).__name__
                )
            pod, error = await self.read(name)
            if pod is None and error is None:
                return True
            await self.wait_change(name, pod)
        _log.error("job %s: deletion of pod %s NOT confirmed", job_id, name)
        return False

    # --- the Launcher protocol -------------------------------------------------------------
    async def check(self) -> None:
        """Refuse to serve when a configured RuntimeClass does not exist in the cluster."""
        classes = [self.config.runtime_class]
        if self.config.gpu_runtime_class is not None:
            classes.append(self.config.gpu_runtime_class)
        for name in classes:
            try:
                exists = await asyncio.to_thread(self.pods.runtime_class_exists, name)
            except (ApiException, *NETWORK_ERRORS) as exc:
                raise LaunchError(f"cannot reach the Kubernetes API: {exc}") from None
            if exists is False:
                raise ConfigError(
                    f"RuntimeClass {name!r} does not exist in the cluster: install Confidential "
                    "Containers (docs/deploy.md) or fix launcher.kubernetes.runtime_class"
                )
            if exists is None:
                _log.warning("cannot read RuntimeClass %s (RBAC); assuming it exists", name)

    def _spec(self, launch: LaunchRequest, *, gpu: bool) -> str:
        spec = JobSpec(
            request=launch.request.event,
            provider=launch.provider,
            relays=launch.relays,
            tee=launch.request.tee,
            evidence_source=EvidenceSource.SEV_SNP_NVIDIA if gpu else EvidenceSource.SEV_SNP,
            evidence_fd=None,
            model=dataclasses.replace(launch.model, path=f"{MODELS_DIR}/{launch.model.name}"),
            runtime_version=launch.runtime_version,
            # The digest reference that ran: the requester rebuilds the initdata from it.
            runtime_image=self.config.image,
            limits=launch.limits,
        )
        return build_job_spec(spec).decode("utf-8")

    def _tee(self, tee: str) -> bool:
        if is_gpu_job(tee):
            if not self.config.offers_gpu:
                raise KubernetesLaunchError(
                    "this node has no GPU runtime class (launcher.kubernetes.gpu_runtime_class)",
                    reason=ErrorReason.UNSUPPORTED_TEE,
                )
            return True
        if tee != TeeKind.SEV_SNP:
            raise KubernetesLaunchError(
                f"the Kubernetes launcher runs sev-snp jobs, not {tee!r}",
                reason=ErrorReason.UNSUPPORTED_TEE,
            )
        return False

    async def _create(self, pod: dict[str, Any], job_id: str) -> None:
        try:
            await asyncio.to_thread(self.pods.create, pod)
        except ApiException as exc:
            message = api_message(exc)
            if exc.status == 403 and "exceeded quota" in message:
                raise KubernetesLaunchError(
                    f"job {job_id}: resource quota exceeded: {message}", reason=ErrorReason.CAPACITY
                ) from None
            if exc.status == 403:
                raise KubernetesLaunchError(
                    f"job {job_id}: forbidden to create pods in {self.config.namespace}: {message}"
                ) from None
            raise KubernetesLaunchError(
                f"job {job_id}: the API server refused the pod ({exc.status}): {message}"
            ) from None
        except NETWORK_ERRORS as exc:
            raise KubernetesLaunchError(
                f"job {job_id}: the Kubernetes API is unreachable ({type(exc).__name__})"
            ) from None

    def _not_started(
        self, view: PodView, *, created: float, pull_since: float | None, now: float
    ) -> tuple[ErrorReason, str] | None:
        cfg = self.config
        if view.waiting_reason in FATAL_WAITING:
            return ErrorReason.LAUNCH_FAILED, f"{view.waiting_reason}: {view.waiting_message}"
        if not view.scheduled and now - created > cfg.schedule_timeout_s:
            why = view.unschedulable or "no node accepted it"
            return ErrorReason.CAPACITY, (f"unschedulable for {cfg.schedule_timeout_s:g} s: {why}")
        if pull_since is not None and now - pull_since > cfg.image_pull_timeout_s:
            return ErrorReason.LAUNCH_FAILED, (
                f"image pull back-off for {cfg.image_pull_timeout_s:g} s "
                f"({view.waiting_reason}): {view.waiting_message}"
            )
        if view.finished and not view.started:
            return ErrorReason.LAUNCH_FAILED, f"the pod failed before starting: {view.pod_message}"
        return None

    async def launch(self, launch: LaunchRequest) -> KubernetesJob:
        job_id = launch.job_id
        gpu = self._tee(launch.request.tee)
        pod = build_job_pod(
            self.config,
            job_id=job_id,
            provider=launch.provider,
            spec_json=self._spec(launch, gpu=gpu),
            gpu=gpu,
            active_deadline_s=launch.kill_after_s,
        )
        name = pod["metadata"]["name"]
        await self._create(pod, job_id)
        _log.info(
            "job %s: pod %s created (runtime class %s)",
            job_id,
            name,
            pod["spec"]["runtimeClassName"],
        )
        created = time.monotonic()
        pull_since: float | None = None
        failure: tuple[ErrorReason, str] | None = None
        while True:
            current, error = await self.read(name)
            now = time.monotonic()
            if current is None and error is None:
                failure = (ErrorReason.LAUNCH_FAILED, "the pod was deleted before it started")
                break
            if current:
                view = read_pod(current)
                if view.started:
                    break
                if view.waiting_reason in PULL_WAITING:
                    pull_since = pull_since or now
                failure = self._not_started(view, created=created, pull_since=pull_since, now=now)
                if failure is not None:
                    break
            elif now - created > self.config.schedule_timeout_s:
                failure = (ErrorReason.LAUNCH_FAILED, error or "the pod cannot be read")
                break
            await self.wait_change(name, current)
        if failure is not None:
            reason, message = failure
            destroyed = await self.destroy(name, job_id=job_id)
            suffix = "pod deleted" if destroyed else "pod deletion NOT confirmed"
            _log.warning("job %s: pod %s did not start: %s (%s)", job_id, name, message, suffix)
            raise KubernetesLaunchError(f"job {job_id}: {message} ({suffix})", reason=reason)
        _log.info("job %s: pod %s started", job_id, name)
        return KubernetesJob(self, launch, name, self._source)

    async def collect_orphans(self, handles: Mapping[str, str]) -> Sequence[str]:
        """Delete every pod of this node a previous run left; the job ids whose pod went."""
        try:
            pods = await asyncio.to_thread(self.pods.list, node_selector(self.config))
        except (ApiException, *NETWORK_ERRORS) as exc:
            raise LaunchError(f"cannot list this node's job pods: {exc}") from None
        known = {handle: job_id for job_id, handle in handles.items()}
        collected: list[str] = []
        for pod in pods:
            meta = pod.get("metadata", {})
            name = meta.get("name")
            if not isinstance(name, str):
                continue
            job_id = meta.get("annotations", {}).get(JOB_ID_ANNOTATION) or known.get(name, name)
            _log.warning("job %s: deleting orphaned pod %s of a previous run", job_id, name)
            if await self.destroy(name, job_id=job_id):
                collected.append(job_id)
        return collected

    async def close(self) -> None:
        await asyncio.to_thread(self._api_client.close)
