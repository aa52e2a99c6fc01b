"""A FAKE Kubernetes API server for the launcher tests: an HTTP server on 127.0.0.1.

It is not Kubernetes. It serves only the REST paths the official ``kubernetes`` client calls
for the launcher, with the real request and response shapes (core/v1 Pod JSON, ``Status``
errors, watch streams of newline-delimited ``{"type", "object"}`` events)::

    POST   /api/v1/namespaces/{ns}/pods                       create (validated, see below)
    GET    /api/v1/namespaces/{ns}/pods/{name}                read
    DELETE /api/v1/namespaces/{ns}/pods/{name}                delete (graceful, then gone)
    GET    /api/v1/namespaces/{ns}/pods?labelSelector=&fieldSelector=[&watch=true&timeoutSeconds=]
    GET    /apis/node.k8s.io/v1/runtimeclasses/{name}         read a RuntimeClass

Every created Pod is validated against the official core/v1 schema (``kubernetes-validate``,
strict, Kubernetes 1.30) and refused with 422 when it does not validate, so each Pod the
launcher generates in a test is also a schema test. What "the cluster" does with a pod is a
**script**: a list of ``(delay_s, status)`` steps applied after creation, so each test says
exactly which lifecycle it drives (scheduled, running, succeeded, image pull back-off, ...).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes_validate

K8S_VERSION = "1.30"
Status = dict[str, Any]
Script = list[tuple[float, Status]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# --- building blocks of scripts ----------------------------------------------------------------


def scheduled() -> Status:
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {"name": "job", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ],
    }


def unschedulable(message: str) -> Status:
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    }


def waiting(reason: str, message: str = "") -> Status:
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "job",
                "ready": False,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ],
    }


def running() -> Status:
    return {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {"name": "job", "ready": True, "state": {"running": {"startedAt": _now()}}}
        ],
    }


def terminated(exit_code: int) -> Status:
    return {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "job",
                "ready": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                    }
                },
            }
        ],
    }


def deadline_exceeded() -> Status:
    return {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "job",
                "ready": False,
                "state": {"terminated": {"exitCode": 137, "reason": "Error"}},
            }
        ],
    }


# --- the server --------------------------------------------------------------------------------


@dataclass
class FakeCluster:
    """State of the fake: pods, an event log for watches, and the knobs tests turn."""

    scripts: dict[str, Script] = field(default_factory=dict)
    default_script: Script = field(default_factory=list)
    runtime_classes: set[str] = field(default_factory=lambda: {"kata-qemu-snp"})
    forbid_create: str | None = None
    quota_exceeded: str | None = None
    delete_delay_s: float = 0.05
    ignore_deletes: bool = False
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    _version: int = 100
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _timers: list[threading.Timer] = field(default_factory=list)

    # state changes (always under the lock) -----------------------------------------------
    def _emit(self, kind: str, ns: str, pod: dict[str, Any]) -> None:
        self._version += 1
        pod["metadata"]["resourceVersion"] = str(self._version)
        self._events.append((self._version, kind, ns, copy.deepcopy(pod)))
        self._lock.notify_all()

    def add_pod(self, pod: dict[str, Any], *, script: Script | None = None) -> None:
        """Put a pod in the cluster directly (an orphan left by a previous node run)."""
        with self._lock:
            self._store(pod)
        self._run_script(pod, script or [])

    def _store(self, pod: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(pod)
        meta = pod["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", _now())
        pod.setdefault("status", {"phase": "Pending"})
        self.pods[(meta["namespace"], meta["name"])] = pod
        self._emit("ADDED", meta["namespace"], pod)
        return pod

    def _run_script(self, pod: dict[str, Any], script: Script) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for delay_s, status in script:
            timer = threading.Timer(delay_s, self.set_status, args=(ns, name, status))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def set_status(self, ns: str, name: str, status: Status) -> None:
        with self._lock:
            pod = self.pods.get((ns, name))
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return
            pod["status"] = copy.deepcopy(status)
            self._emit("MODIFIED", ns, pod)

    def _finish_delete(self, ns: str, name: str) -> None:
        with self._lock:
            pod = self.pods.pop((ns, name), None)
            if pod is not None:
                self.deleted.append(name)
                self._emit("DELETED", ns, pod)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(name for _, name in self.pods)

    # the REST handlers -------------------------------------------------------------------
    def create(self, ns: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.forbid_create is not None:
            return 403, status_error(403, "Forbidden", self.forbid_create)
        if self.quota_exceeded is not None:
            return 403, status_error(403, "Forbidden", self.quota_exceeded)
        try:
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            return 422, status_error(422, "Invalid", f"{path}: {exc.message}")
        name = body.get("metadata", {}).get("name", "")
        body["metadata"]["namespace"] = ns
        with self._lock:
            if (ns, name) in self.pods:
                return 409, status_error(409, "AlreadyExists", f'pods "{name}" already exists')
            pod = self._store(body)
            self.created.append(copy.deepcopy(body))
        self._run_script(pod, self.scripts.get(name, self.default_script))
        return 201, copy.deepcopy(pod)

    def read(self, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pod = self.pods.get((ns, name))
            if pod is None:
                return 404, status_error(404, "NotFound", f'pods "{name}" not found')
            return 200, copy.deepcopy(pod)

    def delete(self, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pod = self.pods.get((ns, name))
            if pod is None:
                return 404, status_error(404, "NotFound", f'pods "{name}" not found')
            if self.ignore_deletes:
                return 200, copy.deepcopy(pod)
            if not pod["metadata"].get("deletionTimestamp"):
                pod["metadata"]["deletionTimestamp"] = _now()
                self._emit("MODIFIED", ns, pod)
                timer = threading.Timer(self.delete_delay_s, self._finish_delete, args=(ns, name))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            return 200, copy.deepcopy(pod)

    def matching(self, ns: str, labels: str, fields: str) -> Callable[[dict[str, Any]], bool]:
        want_labels = dict(p.split("=", 1) for p in labels.split(",") if p)
        want_fields = dict(p.split("=", 1) for p in fields.split(",") if p)

        def match(pod: dict[str, Any]) -> bool:
            meta = pod["metadata"]
            if meta.get("namespace") != ns:
                return False
            have = meta.get("labels", {})
            if any(have.get(k) != v for k, v in want_labels.items()):
                return False
            return all(k == "metadata.name" and meta["name"] == v for k, v in want_fields.items())

        return match

    def list(self, ns: str, labels: str, fields: str) -> dict[str, Any]:
        match = self.matching(ns, labels, fields)
        with self._lock:
            items = [copy.deepcopy(p) for p in self.pods.values() if match(p)]
            version = str(self._version)
        return {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": version},
            "items": items,
        }

    def watch(
        self, ns: str, labels: str, fields: str, since: int, timeout_s: float
    ) -> Iterator[bytes]:
        match = self.matching(ns, labels, fields)
        deadline = time.monotonic() + timeout_s
        cursor = since
        if since == 0:  # like the API server: the current objects as ADDED, then changes
            with self._lock:
                current = [copy.deepcopy(p) for p in self.pods.values() if match(p)]
                cursor = self._version
            for obj in current:
                yield (json.dumps({"type": "ADDED", "object": obj}) + "\n").encode()
        while True:
            with self._lock:
                fresh = [e for e in self._events if e[0] > cursor and e[2] == ns and match(e[3])]
                if not fresh:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._lock.wait(timeout=min(left, 0.2))
                    continue
            for version, kind, _, obj in fresh:
                cursor = version
                yield (json.dumps({"type": kind, "object": obj}) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[list[str], dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        self.cluster.requests.append((self.command, parsed.path))
        return [p for p in parsed.path.split("/") if p], query

    def do_POST(self) -> None:
        parts, _ = self._route()
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            self._send(*self.cluster.create(parts[3], body))
            return
        self._send(404, status_error(404, "NotFound", "the fake serves only pods"))

    def do_DELETE(self) -> None:
        parts, _ = self._route()
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            self._send(*self.cluster.delete(parts[3], parts[5]))
            return
        self._send(404, status_error(404, "NotFound", "the fake serves only pods"))

    def do_GET(self) -> None:
        parts, query = self._route()
        if parts[:4] == ["apis", "node.k8s.io", "v1", "runtimeclasses"] and len(parts) == 5:
            name = parts[4]
            if name in self.cluster.runtime_classes:
                self._send(
                    200,
                    {
                        "apiVersion": "node.k8s.io/v1",
                        "kind": "RuntimeClass",
                        "metadata": {"name": name},
                        "handler": name,
                    },
                )
            else:
                self._send(404, status_error(404, "NotFound", f'runtimeclasses "{name}" not found'))
            return
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            self._send(*self.cluster.read(parts[3], parts[5]))
            return
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            labels = query.get("labelSelector", "")
            fields = query.get("fieldSelector", "")
            if query.get("watch") in ("true", "1"):
                self._stream(parts[3], labels, fields, query)
            else:
                self._send(200, self.cluster.list(parts[3], labels, fields))
            return
        self._send(404, status_error(404, "NotFound", "not served by the fake"))

    def _stream(self, ns: str, labels: str, fields: str, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or 0)
        timeout_s = float(query.get("timeoutSeconds") or 30)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in self.cluster.watch(ns, labels, fields, since, timeout_s):
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (a watch it stopped) is normal here.
        return


@contextmanager
def fake_apiserver(cluster: FakeCluster) -> Iterator[str]:
    """Serve ``cluster`` on a free 127.0.0.1 port; yields the base URL."""
    handler = type("Handler", (_Handler,), {"cluster": cluster})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        cluster.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
