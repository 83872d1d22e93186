"""Pydantic models of the gencsp contract (the single source of truth)."""

from .contract import (
    CONTRACT_VERSION,
    Conditioning,
    Device,
    Manifest,
    ModelIdentity,
    RuntimeInfo,
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
    "CONTRACT_VERSION", "Conditioning", "Device", "Family", "GpuNeed", "Manifest", "ModelCard",
    "ModelIdentity", "Oracle", "RuntimeInfo", "SampleRecord", "SampleRequest", "Status", "Target",
    "Task", "TrainRequest", "Upstream", "WyckoffDescription", "WyckoffSite",
]
