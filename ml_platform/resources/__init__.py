"""Typed Dagster resources, one per external service. Usable outside Dagster too (the CLI builds them directly)."""

from ml_platform.resources.alerts import Alerts
from ml_platform.resources.governance import Governance
from ml_platform.resources.project import ProjectResource
from ml_platform.resources.registry import ModelRegistry
from ml_platform.resources.warehouse import Warehouse

__all__ = ["Alerts", "Governance", "ModelRegistry", "ProjectResource", "Warehouse"]
