"""Freshness SLOs: is each kind of data younger than its maximum age? Pure logic, no Dagster.

An asset that was never materialized is not judged: a platform that has not run yet is not late
(`make demo`, `ml-platform run` or the daily schedule starts it); from its first materialization on,
its age is the time since the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Freshness:
    name: str  # what a person calls it: raw_batch, features, predictions
    asset: str  # the Dagster asset key, as a user string
    max_age_hours: float
    last_updated: datetime | None  # the newest materialization (UTC), None if never

    def age_hours(self, now: datetime) -> float | None:
        if self.last_updated is None:
            return None
        return (now - self.last_updated).total_seconds() / 3600

    def fresh(self, now: datetime) -> bool:
        age = self.age_hours(now)
        return age is None or age <= self.max_age_hours

    def describe(self, now: datetime) -> str:
        age = self.age_hours(now)
        if age is None:
            return f"{self.name}: never materialized (not judged)"
        verdict = "fresh" if self.fresh(now) else "STALE"
        return f"{self.name}: {verdict}, {age:.1f} h old (SLO {self.max_age_hours:g} h)"

    def to_json(self, now: datetime) -> dict:
        age = self.age_hours(now)
        return {"name": self.name, "asset": self.asset, "max_age_hours": self.max_age_hours,
                "last_updated": self.last_updated.isoformat() if self.last_updated else None,
                "age_hours": round(age, 3) if age is not None else None, "fresh": self.fresh(now)}


def stale(states: list[Freshness], now: datetime) -> list[Freshness]:
    return [s for s in states if not s.fresh(now)]


def breach_key(states: list[Freshness]) -> str:
    """Names one stale state: the same stale data gives the same key however often it is looked at, and
    new data (a new materialization) gives a new one. Used as the sensors' run keys."""
    return "+".join(f"{s.name}@{s.last_updated:%Y%m%dT%H%M%S%f}" for s in states if s.last_updated)
