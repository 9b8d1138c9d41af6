"""Label and field selectors, parsed as the API server parses them (the common subset).

Label: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not
exist), `k>3`, `k<3`. `!=` and `notin` also match objects without the label, as in Kubernetes.
Field: `f=v`, `f==v`, `f!=v` over the fields a resource supports; others are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_CMP_RE = re.compile(rf"^({_KEY})\s*(==|!=|=|>|<)\s*({_VALUE})$")
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


class SelectorError(ValueError):
    pass


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SelectorError(f"unbalanced parentheses in selector {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


def parse_label_selector(text: str | None) -> Predicate:
    if not text or not text.strip():
        return lambda obj: True
    preds: list[Predicate] = []
    for term in _split_top_level(text):
        if not term:
            raise SelectorError(f"unable to parse requirement: empty term in {text!r}")
        preds.append(_label_term(term))
    return lambda obj: all(p(_labels(obj)) for p in preds)  # type: ignore[arg-type]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if term.startswith("!"):
        key = term[1:].strip()
        if not _KEY_RE.match(key):
            raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
        return lambda labels: key not in labels
    m = _SET_RE.match(term)
    if m:
        key, op, raw = m.group(1), m.group(2), m.group(3)
        values = {v.strip() for v in raw.split(",")}
        if not all(_VALUE_RE.match(v) for v in values):
            raise SelectorError(f"unable to parse requirement: invalid value in {term!r}")
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    m = _CMP_RE.match(term)
    if m:
        key, op, value = m.groups()
        if op in ("=", "=="):
            return lambda labels: labels.get(key) == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        try:
            bound = int(value)
        except ValueError:
            raise SelectorError(f"unable to parse requirement: {value!r} is not an integer") from None

        def _cmp(labels: dict[str, str]) -> bool:
            try:
                have = int(labels[key])
            except (KeyError, ValueError):
                return False
            return have > bound if op == ">" else have < bound
        return _cmp
    if _KEY_RE.match(term):
        return lambda labels: term in labels
    raise SelectorError(f"unable to parse requirement: {term!r}")


def field_value(obj: dict[str, Any], field: str) -> str:
    node: Any = obj
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def parse_field_selector(text: str | None, supported: tuple[str, ...]) -> Predicate:
    if not text or not text.strip():
        return lambda obj: True
    preds: list[Predicate] = []
    for term in text.split(","):
        term = term.strip()
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        field, op, value = m.group(1), m.group(2), m.group(3).strip()
        if field not in supported:
            raise SelectorError(f'field label not supported: {field}')
        if op == "!=":
            preds.append(lambda obj, f=field, v=value: field_value(obj, f) != v)
        else:
            preds.append(lambda obj, f=field, v=value: field_value(obj, f) == v)
    return lambda obj: all(p(obj) for p in preds)
