"""What every object shares: its metadata (ObjectMeta, as ValidateObjectMeta checks it) and label selectors
(ValidateLabelSelector). Each kind checks its name's format itself: Services take DNS-1035 labels, Namespaces
DNS-1123 labels, the others DNS-1123 subdomains."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from testbed.model.names import (
    Annotations,
    Labels,
    bandwidth,
    dns_label,
    dns_subdomain,
    label_value,
    qualified_name,
)


class Loose(BaseModel):
    """Real manifests carry many fields testbed does not act on; accept them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class ObjectMeta(Loose):
    name: Annotated[str, AfterValidator(dns_subdomain)]
    namespace: Annotated[str, AfterValidator(dns_label)] | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bandwidth(self) -> ObjectMeta:
        """The kubelet's bandwidth annotations must parse (a pod with a bad one never starts)."""
        bandwidth(self.annotations)
        return self


class Requirement(Loose):
    key: Annotated[str, AfterValidator(qualified_name)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Requirement:
        """As the API server validates a LabelSelectorRequirement."""
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values: must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values: must be empty when operator is {self.operator}")
        for value in self.values:
            label_value(value, self.key)
        return self


class LabelSelector(Loose):
    matchLabels: Labels = Field(default_factory=dict)
    matchExpressions: list[Requirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        for r in self.matchExpressions:
            has = r.key in labels
            ok = {"In": has and labels.get(r.key) in r.values,
                  "NotIn": not has or labels.get(r.key) not in r.values,
                  "Exists": has, "DoesNotExist": not has}[r.operator]
            if not ok:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.matchLabels and not self.matchExpressions


class TemplateMeta(Loose):
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bandwidth(self) -> TemplateMeta:
        bandwidth(self.annotations)
        return self
