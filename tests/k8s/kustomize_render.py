"""TEST CODE: a small renderer for the subset of kustomize that ``k8s/`` uses.

No kustomize binary is installable from the registries this project's CI reaches (PyPI,
Debian, npm), so the manifest tests render the overlays with this instead, and compare it with
``kubectl kustomize`` wherever a kubectl is installed (tests/k8s/test_manifests.py).

Supported, as kustomize v5 defines them (https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/):
``resources`` (files and directories holding a ``kustomization.yaml``, recursively),
``labels`` with ``includeSelectors: false`` and no ``includeTemplates`` (metadata labels only)
and ``patches`` given by ``path`` as strategic-merge patches of maps (matched by apiVersion
group, kind, namespace and name). Anything else in a kustomization, or a patch that would merge
lists, is refused rather than rendered differently from kustomize.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

_KEYS = frozenset({"apiVersion", "kind", "resources", "labels", "patches"})


class UnsupportedKustomization(Exception):  # noqa: N818 - reads as the condition
    """The kustomization uses a feature this renderer does not implement."""


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list):
            raise UnsupportedKustomization(f"list merge at {key!r} is not implemented")
        else:
            target[key] = copy.deepcopy(value)


def _identity(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    meta = doc.get("metadata", {})
    return group, doc["kind"], meta.get("namespace", ""), meta["name"]


def render(directory: Path) -> list[dict[str, Any]]:
    """Render the kustomization in ``directory`` into a list of objects."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KEYS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: unsupported keys {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            if directory.resolve() not in path.parents:
                raise UnsupportedKustomization(
                    f"{entry} is outside {directory} (kustomize refuses)"
                )
            docs += _load_all(path)
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise UnsupportedKustomization(f"patch {entry} is not a path patch")
        for patch in _load_all(directory / entry["path"]):
            targets = [d for d in docs if _identity(d) == _identity(patch)]
            if len(targets) != 1:
                raise UnsupportedKustomization(f"patch {entry['path']} matches {len(targets)}")
            _merge(targets[0], patch)
    for entry in kustomization.get("labels", []):
        if entry.get("includeSelectors") is not False or entry.get("includeTemplates"):
            raise UnsupportedKustomization("only labels with includeSelectors: false")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    return docs
