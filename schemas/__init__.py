"""Pydantic models of the gencsp contract (the single source of truth)."""

from .contract import (
    CONTRACT_VERSION,
    Budget,
    Conditioning,
    Device,
    Hardware,
    Manifest,
    ModelIdentity,
    Progress,
    RuntimeInfo,
    SampleCost,
    SampleRecord,
    SampleRequest,
    Status,
    Target,
    Task,
    TrainRequest,
    Upstream,
    WyckoffDescription,
    WyckoffSite,
)
from .model_card import Family, GpuNeed, ModelCard, Oracle

__all__ = [
    "CONTRACT_VERSION", "Budget", "Conditioning", "Device", "Family", "GpuNeed", "Hardware", "Manifest",
    "ModelCard", "ModelIdentity", "Oracle", "Progress", "RuntimeInfo", "SampleCost", "SampleRecord", "SampleRequest", "Status", "Target",
    "Task", "TrainRequest", "Upstream", "WyckoffDescription", "WyckoffSite",
]
