"""The one manifest loader, shared by the file source, the CLI and the tests.

Reads *.yaml, *.yml and *.json files (a directory recursively, in name order), with
multi-document YAML and `kind: List`. A file that does not parse is a diagnostic naming
the file; the other files still load. An object defined twice is used once (the first
in path order) and reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xds_ingress.diagnostics import Diagnostic
from xds_ingress.model import KINDS, identify

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Document:
    raw: dict
    origin: str  # "path#index", for diagnostics


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The manifest files under `paths` (files as given, directories recursively), sorted."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES
                              and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.exists():
            out.append(p)
    return out


def _file_diag(path: Path, message: str) -> Diagnostic:
    return Diagnostic(kind="File", namespace="", name=str(path), field="", reason="InvalidManifest", message=message)


def load_text(text: str, origin: str) -> tuple[list[Document], list[Diagnostic]]:
    """Documents in one manifest text (YAML or JSON), `kind: List` flattened."""
    diags: list[Diagnostic] = []
    docs: list[Document] = []
    try:
        if origin.endswith(".json"):
            loaded: list[Any] = [json.loads(text)]
        else:
            loaded = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError) as exc:
        msg = str(exc).replace("\n", " ")
        diags.append(_file_diag(Path(origin), f"does not parse as {'JSON' if origin.endswith('.json') else 'YAML'}: "
                                              f"{msg[:300]}. Fix the syntax; the file's objects are not loaded."))
        return docs, diags
    for i, doc in enumerate(_flatten(loaded)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            diags.append(_file_diag(Path(origin), f"document {i} is not a Kubernetes object (a mapping); it is ignored."))
            continue
        docs.append(Document(raw=doc, origin=f"{origin}#{i}"))
    return docs, diags


def _flatten(docs: Iterable[Any]) -> Iterator[Any]:
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") \
                and isinstance(doc.get("items"), list):
            yield from _flatten(doc["items"])
        else:
            yield doc


def load_file(path: Path) -> tuple[list[Document], list[Diagnostic]]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return [], [_file_diag(path, f"is {size} bytes; manifests larger than {MAX_FILE_BYTES} bytes are not read.")]
        data = path.read_bytes()
    except OSError as exc:
        return [], [_file_diag(path, f"cannot be read: {exc.strerror or exc}.")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [_file_diag(path, f"is not valid UTF-8 (byte {exc.start}); save it as UTF-8.")]
    return load_text(text, str(path))


def select(documents: Iterable[Document]) -> tuple[dict[tuple[str, str, str], Document], list[Diagnostic]]:
    """The documents of the kinds we read, keyed by (kind, namespace, name); duplicates reported."""
    out: dict[tuple[str, str, str], Document] = {}
    diags: list[Diagnostic] = []
    for doc in documents:
        ident = identify(doc.raw)
        if ident is None or ident[0] not in KINDS:
            continue
        if ident in out:
            kind, ns, name = ident
            diags.append(Diagnostic(
                kind=kind, namespace=ns, name=name, field="metadata.name", reason="DuplicateObject",
                message=(f"is defined twice, in {out[ident].origin} and {doc.origin}; the first is used. "
                         "Remove one of them.")))
            continue
        out[ident] = doc
    return out, diags


def load_paths(paths: Iterable[str | Path]) -> tuple[dict[tuple[str, str, str], Document], list[Diagnostic]]:
    """Every object under `paths`, keyed, with the file and duplicate diagnostics."""
    docs: list[Document] = []
    diags: list[Diagnostic] = []
    for f in manifest_files(paths):
        d, fd = load_file(f)
        docs.extend(d)
        diags.extend(fd)
    selected, dd = select(docs)
    return selected, diags + dd
