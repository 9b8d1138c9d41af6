"""One type for everything a user got wrong: which object, which field, what to change."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"      # the field (or object) is ignored; something the user asked for does not happen
    WARNING = "warning"  # served, but maybe not as the user meant (a conflict lost, an unsupported detail)


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Diagnostic:
    """A problem with one Kubernetes object.

    `field` is a JSONPath-like location inside the object (``spec.rules[0].http.paths[1].pathType``);
    `message` is a sentence that says what is wrong and what to change.
    `reason` is a short CamelCase code, usable as a Kubernetes Event reason and a metric label.
    """

    kind: str
    namespace: str
    name: str
    field: str
    reason: str
    message: str
    severity: Severity = Severity.ERROR

    @property
    def object_ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def __str__(self) -> str:
        where = f" {self.field}:" if self.field else ""
        return f"{self.severity.value}: {self.object_ref}:{where} {self.message} [{self.reason}]"

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "field": self.field,
            "reason": self.reason,
            "severity": self.severity.value,
            "message": self.message,
        }
