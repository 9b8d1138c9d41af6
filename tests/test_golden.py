"""Golden tests for translation, in two stages per case (see tests/golden_support.py).

    manifests (input.yaml) -> IR + diagnostics (ir.yaml) -> Envoy resources (envoy.yaml)

`pytest tests/test_golden.py --update-golden` (or `make golden`) rewrites the expected
files and deletes orphaned ones. Review the diff: the golden files are the specification.
"""

from __future__ import annotations

import base64
import difflib
import re
from pathlib import Path

import pytest

from tests.golden_support import (
    GOLDEN_DIR,
    REDACTED,
    STAGES,
    case_names,
    envoy_data,
    expected_files,
    orphaned_files,
    run_case,
    stray_inputs,
)
from xds_ingress.diagnostics import Severity
from xds_ingress.envoy import types
from xds_ingress.model import KINDS

CASES = case_names()
HOW_TO_UPDATE = "run `make golden` (pytest tests/test_golden.py --update-golden) and review the diff"


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def _rel(path: Path) -> str:
    return str(path.relative_to(GOLDEN_DIR.parent.parent))


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, stage: str, update_golden: bool) -> None:
    path = GOLDEN_DIR / case / stage
    actual = STAGES[stage](run_case(case))
    if update_golden:
        if not path.is_file() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"{_rel(path)} is missing; {HOW_TO_UPDATE}.", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if expected != actual:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"{_rel(path)} (expected)", tofile=f"{_rel(path)} (actual)"))
        pytest.fail(f"{_rel(path)} differs from the translation; if the change is intended, "
                    f"{HOW_TO_UPDATE}.\n{diff}", pytrace=False)


def test_no_orphaned_golden_files(update_golden: bool) -> None:
    orphans = orphaned_files()
    if update_golden:
        for f in orphans:
            f.unlink()
        for d in sorted((p for p in GOLDEN_DIR.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
    elif orphans:
        pytest.fail(f"expected files of no current case or stage: {', '.join(_rel(f) for f in orphans)}; "
                    f"{HOW_TO_UPDATE}.", pytrace=False)
    stray = stray_inputs()
    assert not stray, f"settings of no case (no input.yaml beside them): {[_rel(f) for f in stray]}; remove them."


def test_orphans_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale stage file, and the expected files of a removed case, are orphans; inputs are not."""
    import tests.golden_support as gs

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "input.yaml").write_text("")
    (tmp_path / "kept" / "settings.yaml").write_text("")
    (tmp_path / "kept" / "ir.yaml").write_text("")
    (tmp_path / "kept" / "old-stage.yaml").write_text("")
    (tmp_path / "renamed").mkdir()
    (tmp_path / "renamed" / "envoy.yaml").write_text("")
    monkeypatch.setattr(gs, "GOLDEN_DIR", tmp_path)
    assert gs.case_names() == ["kept"]
    assert gs.orphaned_files() == [tmp_path / "kept" / "old-stage.yaml", tmp_path / "renamed" / "envoy.yaml"]
    assert gs.stray_inputs() == []


def test_enough_cases() -> None:
    assert len(CASES) >= 35, CASES


# --- secrets never reach a golden file ---------------------------------------------------

_PRIVATE_KEY_MARKERS = ("PRIVATE KEY",) + tuple(
    # "PRIVATE KEY" base64-encoded at each of the three alignments (protojson renders bytes as base64).
    base64.b64encode(b"x" * shift + b"PRIVATE KEY")[4 if shift else 0:][:12].decode() for shift in (0, 1, 2))


def test_no_golden_file_contains_a_private_key() -> None:
    files = sorted(expected_files())
    assert files
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(encoding="utf-8")
        for marker in _PRIVATE_KEY_MARKERS:
            assert marker not in text, f"{_rel(f)} contains {marker!r}"


def _tls_cases() -> list[str]:
    return [c for c in CASES if run_case(c).translation.ir.secrets]


def test_secrets_are_redacted_in_the_envoy_stage() -> None:
    cases = _tls_cases()
    assert len(cases) >= 5, cases
    for case in cases:
        run = run_case(case)
        data = envoy_data(run.resources)
        assert data["secrets"]
        assert any("tls_certificate" in s for s in data["secrets"])
        for s in data["secrets"]:
            if "validation_context" in s:
                # CA certificates that client certificates are verified against: public, nothing to redact.
                assert set(s) == {"name", "validation_context"} and s["name"].endswith("/ca.crt")
                assert set(s["validation_context"]) == {"trusted_ca"}
                continue
            assert s["tls_certificate"]["private_key"] == {"inline_bytes": REDACTED}
            assert s["tls_certificate"]["certificate_chain"]["inline_bytes"]
        # The message itself still carries the key: redaction is in the rendering only.
        for name, msg in run.resources[types.SECRET].items():
            if msg.HasField("validation_context"):
                continue
            key = msg.tls_certificate.private_key.inline_bytes
            assert b"PRIVATE KEY" in key
            body = b"".join(key.splitlines()[1:-1]).decode()
            for stage in STAGES:
                assert body[:40] not in (GOLDEN_DIR / case / stage).read_text(), (case, stage, name)


# --- diagnostics ------------------------------------------------------------------------

# Diagnostics about an object as a whole, not one of its fields.
_WHOLE_OBJECT_REASONS = {"NoReadyEndpoints", "InvalidManifest"}
# Reasons for a value that is present in the input and wrong: the field must exist in the raw object.
_PRESENT_VALUE_REASONS = {"InvalidType", "InvalidHost", "InvalidPath", "InvalidPathType", "InvalidPort",
                          "InvalidName", "InvalidAddress", "InvalidAddressType",
                          "InvalidCertificate", "ServiceNotFound", "ServicePortNotFound", "UnsupportedBackend",
                          "UnsupportedServiceType", "PathConflict", "DefaultBackendConflict", "SecretNotFound",
                          "TLSHostConflict", "InvalidBackend", "DuplicatePort", "IngressClassNotFound",
                          # annotations: the field is the annotation, present in metadata.annotations
                          "InvalidAnnotation", "UnknownAnnotation", "MisplacedAnnotation", "IgnoredAnnotation",
                          "ConflictingAnnotation", "IncompleteAnnotation", "CanaryWithoutPrimary", "CanaryConflict",
                          "CanaryIgnored", "InvalidExternalName"}

# Reasons for a value that is absent: the field (maybe its parent too) is not in the raw object.
_ABSENT_VALUE_REASONS = {"MissingField", "NoServiceLabel", "MissingSecretName", "NoTLSHosts",
                         "UnsupportedAPIVersion"}

_FIELD_TOKEN = re.compile(r"\.?([A-Za-z0-9_]+)|\[(\d+)\]|\['([^']*)'\]")


def _resolve(raw: object, field: str) -> tuple[bool, bool]:
    """(parent exists, field exists) for a field path like spec.rules[0].host or data['tls.crt']."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(field):
        m = _FIELD_TOKEN.match(field, pos)
        assert m, f"unparseable field path {field!r} at {pos}"
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)) if m.group(2) else m.group(3))
        pos = m.end()
    node = raw
    for i, tok in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(tok, int) and isinstance(node, list) and tok < len(node):
            node = node[tok]
        elif isinstance(tok, str) and isinstance(node, dict) and tok in node:
            node = node[tok]
        else:
            return last, False
    return True, True


def _all_diagnostics():
    for case in CASES:
        run = run_case(case)
        for d in run.diagnostics:
            yield case, run, d


def test_every_diagnostic_names_its_object_and_field() -> None:
    seen_reasons = set()
    for case, run, d in _all_diagnostics():
        where = f"{case}: {d}"
        seen_reasons.add(d.reason)
        assert d.message.strip() and d.message.rstrip().endswith((".", ")", "?")), where
        assert d.reason and re.fullmatch(r"[A-Z][A-Za-z]+", d.reason), where
        assert d.kind in KINDS or d.kind == "File", where
        assert d.name, where
        assert isinstance(d.severity, Severity), where
        if d.kind == "File":
            continue
        if d.kind != "IngressClass":
            assert d.namespace, where
        raw = run.raws.get((d.kind, d.namespace, d.name if d.name != "<unnamed>" else ""))
        assert raw is not None, f"{where}: names no object of the input"
        if d.reason in _WHOLE_OBJECT_REASONS:
            continue
        assert d.field, f"{where}: names no field"
        parent, exists = _resolve(raw, d.field)
        if d.reason in _ABSENT_VALUE_REASONS:
            continue
        assert parent, f"{where}: field {d.field!r} is not in the object"
        if d.reason in _PRESENT_VALUE_REASONS:
            assert exists, f"{where}: field {d.field!r} is not in the object"
    # Every diagnostic path of the translator is covered by some case.
    assert {"IngressClassNotFound", "InvalidHost", "InvalidPath", "InvalidPathType", "MissingField",
            "PathConflict", "DefaultBackendConflict", "ServiceNotFound", "ServicePortNotFound",
            "UnsupportedBackend", "UnsupportedServiceType", "NoReadyEndpoints", "NoServiceLabel",
            "SecretNotFound", "InvalidCertificate", "TLSHostConflict", "NoTLSHosts", "MissingSecretName",
            "InvalidType", "UnsupportedAPIVersion", "DuplicateObject", "InvalidManifest",
            "ConflictingIngressClass", "InvalidAnnotation", "UnknownAnnotation", "MisplacedAnnotation",
            "IgnoredAnnotation", "ConflictingAnnotation", "IncompleteAnnotation", "CanaryWithoutPrimary",
            "CanaryConflict", "CanaryIgnored", "InvalidExternalName", "TLSSettingsConflict",
            "ClientCertificatesUnavailable"} <= seen_reasons, seen_reasons


def test_diagnostics_are_sorted_and_unique() -> None:
    for case in CASES:
        diags = run_case(case).diagnostics
        assert list(diags) == sorted(set(diags)), case
