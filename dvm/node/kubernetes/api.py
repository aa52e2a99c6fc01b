"""The Kubernetes API calls the launcher makes, and nothing else (docs/deploy.md, RBAC).

The node's Role allows exactly these: create, read, delete, list and watch Pods in the jobs
namespace, and read RuntimeClasses. :class:`PodsApi` wraps them with the official ``kubernetes``
client; every call is **blocking** (the launcher runs them in worker threads with
:func:`asyncio.to_thread`) and carries ``api_timeout_s``. Responses are read as plain JSON
(``_preload_content=False``) so that what the launcher decides on is the API server's document,
not the client's model of it. :func:`api_client_for` builds the client from a kubeconfig or the
in-cluster service account; :func:`api_message` extracts the API server's message from an error.
The tests run these calls against a fake API server (``tests/k8s/fake_apiserver.py``).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from ..errors import ConfigError
from .pod import KubernetesConfig

__all__ = ["NETWORK_ERRORS", "PodsApi", "api_client_for", "api_message"]

#: What a call may raise when the API server cannot be reached or answers nonsense.
NETWORK_ERRORS = (OSError, k8s_client.exceptions.OpenApiException)


def api_client_for(config: KubernetesConfig) -> k8s_client.ApiClient:
    """An API client from ``kubeconfig`` when set, else the pod's in-cluster service account."""
    configuration = k8s_client.Configuration()
    try:
        if config.kubeconfig is not None:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped upstream
                config_file=config.kubeconfig, client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]  # untyped upstream
                client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError) as exc:
        raise ConfigError(f"config key launcher.kubernetes.kubeconfig: {exc}") from None
    return k8s_client.ApiClient(configuration)


def api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "no message")[:500]


class PodsApi:
    """The four pod calls, blocking (run them with :func:`asyncio.to_thread`)."""

    def __init__(self, api_client: k8s_client.ApiClient, config: KubernetesConfig) -> None:
        self._core = k8s_client.CoreV1Api(api_client)
        self._node = k8s_client.NodeV1Api(api_client)
        self._ns = config.namespace
        self._timeout_s = config.api_timeout_s

    def _json(self, response: Any) -> dict[str, Any]:
        data = json.loads(response.data)
        return data if isinstance(data, dict) else {}

    def create(self, pod: dict[str, Any]) -> None:
        self._core.create_namespaced_pod(
            self._ns,
            body=k8s_client.V1Pod.model_validate(pod),
            _preload_content=False,
            _request_timeout=self._timeout_s,
        )

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(
                self._core.read_namespaced_pod(
                    name, self._ns, _preload_content=False, _request_timeout=self._timeout_s
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, name: str) -> None:
        try:
            self._core.delete_namespaced_pod(
                name,
                self._ns,
                grace_period_seconds=0,
                _preload_content=False,
                _request_timeout=self._timeout_s,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list(self, selector: str) -> list[dict[str, Any]]:
        data = self._json(
            self._core.list_namespaced_pod(
                self._ns,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self._timeout_s,
            )
        )
        return [p for p in data.get("items", []) if isinstance(p, dict)]

    def wait_change(self, name: str, version: str | None, timeout_s: float) -> None:
        """Block until the pod changes after ``version`` or ``timeout_s`` passes."""
        watcher = k8s_watch.Watch()  # type: ignore[no-untyped-call]  # untyped upstream
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": max(1, int(timeout_s)),
            "_request_timeout": timeout_s + self._timeout_s,
            "deserialize": False,
        }
        if version is not None:
            kwargs["resource_version"] = version
        stream = watcher.stream(  # type: ignore[no-untyped-call]  # untyped upstream
            self._core.list_namespaced_pod, self._ns, **kwargs
        )
        for _event in stream:
            watcher.stop()  # type: ignore[no-untyped-call]  # untyped upstream
            return

    def runtime_class_exists(self, name: str) -> bool | None:
        """True/False, or None when the node may not read RuntimeClasses (RBAC)."""
        try:
            self._node.read_runtime_class(
                name, _preload_content=False, _request_timeout=self._timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return None
            raise
        return True
