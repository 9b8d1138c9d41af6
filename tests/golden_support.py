"""Golden cases for translation: load a case, run it, render each stage as stable YAML.

A case is a directory tests/golden/<case>/ with
- input.yaml     manifests (multi-document YAML), read with the one manifest loader;
- settings.yaml  optional: non-default TranslateSettings fields, e.g. ``ingress_class: edge``;
- ir.yaml        expected: diagnostics (manifest + parse + translation, sorted) and the IR;
- envoy.yaml     expected: the Envoy resources as protojson, by type, sorted by name,
                 private keys replaced by "[redacted]".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.message import Message

from xds_ingress import envoy, ir
from xds_ingress.diagnostics import Diagnostic
from xds_ingress.envoy import dump, types
from xds_ingress.manifests import load_text, select
from xds_ingress.model import K8sObject, ObjectKey, parse_objects
from xds_ingress.translate import TranslateSettings, Translation, translate

GOLDEN_DIR = Path(__file__).parent / "golden"
INPUT = "input.yaml"
SETTINGS = "settings.yaml"
INPUT_FILES = (INPUT, SETTINGS)
REDACTED = "[redacted]"

# Envoy resource groups in envoy.yaml, in this order.
ENVOY_GROUPS = ("listeners", "routes", "clusters", "endpoints", "secrets")


@dataclass(frozen=True)
class CaseRun:
    name: str
    raws: dict[ObjectKey, dict]  # the raw documents by (kind, namespace, name)
    settings: TranslateSettings
    objects: tuple[K8sObject, ...]  # parsed, in input order
    input_diagnostics: tuple[Diagnostic, ...]  # manifest loader + parse diagnostics
    translation: Translation
    resources: envoy.Resources

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return tuple(sorted(set(self.input_diagnostics) | set(self.translation.diagnostics)))


def case_names() -> list[str]:
    return sorted(d.name for d in GOLDEN_DIR.iterdir() if d.is_dir() and (d / INPUT).is_file())


def load_settings(case_dir: Path) -> TranslateSettings:
    path = case_dir / SETTINGS
    if not path.is_file():
        return TranslateSettings()
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a mapping of TranslateSettings fields")
    return TranslateSettings(**data)


def load_objects(case: str) -> tuple[dict[ObjectKey, dict], list[K8sObject], list[Diagnostic]]:
    """The raw documents, parsed objects and input diagnostics of a case's input.yaml."""
    text = (GOLDEN_DIR / case / INPUT).read_text(encoding="utf-8")
    # A fixed origin keeps file diagnostics independent of where the checkout lives.
    docs, diags = load_text(text, INPUT)
    selected, dup = select(docs)
    raws = {k: d.raw for k, d in selected.items()}
    objects, parse_diags = parse_objects(raws.values())
    return raws, objects, diags + dup + parse_diags


@functools.cache
def run_case(case: str) -> CaseRun:
    raws, objects, diags = load_objects(case)
    settings = load_settings(GOLDEN_DIR / case)
    t = translate(objects, settings)
    return CaseRun(name=case, raws=raws, settings=settings, objects=tuple(objects),
                   input_diagnostics=tuple(diags), translation=t, resources=envoy.build(t.ir))


# --- rendering -------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Stable, readable YAML: no anchors, multi-line strings (PEM) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def message_data(msg: Message) -> dict:
    """protojson of a message as plain dicts, map entries sorted by key (envoy/dump.py's to_data)."""
    return dump.to_data(msg)


def redact_private_keys(data: Any) -> Any:
    """A copy of protojson data with every `private_key` DataSource's content replaced by "[redacted]"."""
    if isinstance(data, list):
        return [redact_private_keys(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for k, v in data.items():
        if k == "private_key" and isinstance(v, dict):
            out[k] = {dk: (REDACTED if dk.startswith("inline_") else dv) for dk, dv in v.items()}
        else:
            out[k] = redact_private_keys(v)
    return out


def envoy_data(resources: envoy.Resources) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in ENVOY_GROUPS:
        msgs = resources.get(types.BY_SHORT_NAME[group], {})
        items = [message_data(msgs[name]) for name in sorted(msgs)]
        if group == "secrets":
            items = [redact_private_keys(d) for d in items]
        out[group] = items
    return out


def render_ir(run: CaseRun) -> str:
    return dump_yaml({
        "diagnostics": [d.as_dict() for d in run.diagnostics],
        "ir": ir.to_data(run.translation.ir),
    })


def render_envoy(run: CaseRun) -> str:
    return dump_yaml(envoy_data(run.resources))


# Expected file name -> how to render it. A file of another name that is not an input is an orphan.
STAGES: dict[str, Callable[[CaseRun], str]] = {
    "ir.yaml": render_ir,
    "envoy.yaml": render_envoy,
}


def expected_files() -> set[Path]:
    return {GOLDEN_DIR / case / stage for case in case_names() for stage in STAGES}


def orphaned_files() -> list[Path]:
    """Expected-output files that no current case and stage produce (a removed or renamed case or stage)."""
    current = expected_files()
    return [f for f in sorted(GOLDEN_DIR.rglob("*"))
            if f.is_file() and f.suffix in (".yaml", ".yml") and f.name not in INPUT_FILES and f not in current]


def stray_inputs() -> list[Path]:
    """settings.yaml files of no case (its input.yaml is gone): inputs are never deleted automatically."""
    return [f for f in sorted(GOLDEN_DIR.rglob(SETTINGS))
            if not (f.parent.parent == GOLDEN_DIR and (f.parent / INPUT).is_file())]
