"""Champion transitions as compare-and-set under a lock, each one appended to the audit log.

At most one champion per registered model, even with concurrent promoters (two sensors, a CLI and a
rollback at once): every transition takes a per-model lock, re-reads the champion alias, checks it
against what the caller expected, moves the aliases and appends the audit record before releasing.
The lock lives where the audit log and the registry live: a PostgreSQL advisory lock when the
warehouse (the production profile) or the MLflow store is on PostgreSQL, an exclusive file lock beside
the SQLite store otherwise. Both hold across processes and, for PostgreSQL, across machines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from ml_platform.lib.governance import PASSED_GATE
from ml_platform.locks import exclusive
from ml_platform.resources.alerts import Alerts
from ml_platform.resources.registry import CHAMPION, ModelRegistry
from ml_platform.resources.warehouse import Warehouse
from ml_platform.settings import AUDIT_TABLE

PREVIOUS_CHAMPION = "previous_champion"
ANY = object()  # "do not compare": the caller accepts whatever the champion is now


class GovernanceError(RuntimeError):
    """A transition was refused; the refusal is in the audit log."""


class ConcurrentChangeError(GovernanceError):
    """The champion moved between the caller's read and its transition (compare-and-set failed)."""


class Governance(dg.ConfigurableResource):
    registry: ModelRegistry
    warehouse: Warehouse
    alerts: Alerts | None = None  # every rollback is alerted when set

    # -- the lock ---------------------------------------------------------------------------
    @contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        uri = self.registry.resolved_tracking_uri()
        database = next((u for u in (self.warehouse.location(), uri) if u.startswith("postgresql")), None)
        with exclusive(f"champion-{model_name}", database_url=database, lock_dir=self._lock_dir(uri)):
            yield

    @staticmethod
    def _lock_dir(uri: str) -> Path:
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).parent
        from ml_platform import settings

        return settings.platform_paths().mlflow_dir

    # -- transitions --------------------------------------------------------------------------
    def promote(self, model_name: str, version: str, *, actor: str, reason: str, evidence: dict[str, Any],
                action: str = "promote", expected_champion: Any = ANY) -> dict:
        """Make `version` the champion; the old champion becomes `previous_champion`."""
        version = str(version)
        with self.lock(model_name):
            current = self.registry.champion_version(model_name)
            if expected_champion is not ANY and current != expected_champion:
                self._append(model_name, f"{action}_conflict", version, current, version, actor,
                             f"expected champion {expected_champion or 'none'}, found {current or 'none'}", evidence)
                raise ConcurrentChangeError(
                    f"{model_name}: champion is {current or 'none'}, not {expected_champion or 'none'} as expected: "
                    f"another promotion or rollback happened first; nothing changed"
                )
            if current == version:
                return self._append(model_name, f"{action}_noop", version, current, version, actor,
                                    f"version {version} is already champion", evidence)
            self._move_champion(model_name, current, version, actor, reason)
            return self._append(model_name, action, version, current, version, actor, reason, evidence)

    def rollback(self, model_name: str, *, actor: str, reason: str, to: str | None = None, force: bool = False,
                 expected_champion: Any = ANY) -> dict:
        """Point `champion` back at `previous_champion` (or `to`), in one step, without retraining."""
        with self.lock(model_name):
            current = self.registry.champion_version(model_name)
            target = str(to) if to is not None else self.registry.alias_version(model_name, PREVIOUS_CHAMPION)
            evidence = {"requested_to": to, "force": force}

            def refuse(why: str) -> GovernanceError:
                self._append(model_name, "rollback_refused", target, current, target, actor, why, evidence, force)
                return GovernanceError(f"rollback of {model_name} refused: {why}; the champion is unchanged")

            if expected_champion is not ANY and current != expected_champion:
                self._append(model_name, "rollback_conflict", target, current, target, actor,
                             f"expected champion {expected_champion or 'none'}, found {current or 'none'}", evidence)
                raise ConcurrentChangeError(f"{model_name}: champion is {current or 'none'}, not "
                                            f"{expected_champion or 'none'} as expected; nothing changed")
            if current is None:
                raise refuse("there is no champion to roll back from")
            if target is None:
                raise refuse("there is no previous champion: name a version with --to")
            version = self.registry.find_version(model_name, target)
            if version is None:
                raise refuse(f"version {target} does not exist")
            if target == current:
                raise refuse(f"version {target} is already the champion")
            decision = version.tags.get("gate_decision", "not gated")
            if decision not in PASSED_GATE and not force:
                raise refuse(f"version {target} never passed the gate (gate_decision: {decision}); "
                             "use --force to override, which is recorded")
            self._move_champion(model_name, current, target, actor, reason)
            self.registry.tag_version(model_name, current, {"demoted_at": _now(), "demoted_by": actor,
                                                            "demotion_reason": reason})
            record = self._append(model_name, "rollback", target, current, target, actor, reason,
                                  {**evidence, "target_gate_decision": decision}, force)
        self._alert_rollback(record, decision)  # after the lock: a slow webhook must not hold the champion
        return record

    def record(self, model_name: str, action: str, *, version: str | None, actor: str, reason: str,
               evidence: dict[str, Any] | None = None) -> dict:
        """Append a decision that moves no alias (a gate rejection, a refused approval)."""
        with self.lock(model_name):
            current = self.registry.champion_version(model_name)
            return self._append(model_name, action, version, current, current, actor, reason, evidence or {})

    def history(self, model_name: str) -> list[dict]:
        if not self.warehouse.table_exists(AUDIT_TABLE):
            return []
        frame = self.warehouse.query(f"select * from {AUDIT_TABLE} where model_name = ? order by seq", [model_name])
        records = frame.to_dict(orient="records")
        for record in records:
            record["recorded_at"] = str(record["recorded_at"])
            record["evidence"] = json.loads(record["evidence"] or "{}")
        return records

    def _alert_rollback(self, record: dict, target_gate_decision: str) -> None:
        if self.alerts is None:
            return
        name, demoted, champion = record["model_name"], record["from_version"], record["to_version"]
        self.alerts.send(
            "rollback", f"{name}: champion rolled back from v{demoted} to v{champion} by {record['actor']}",
            {"reason": record["reason"], "champion now": f"v{champion} (gate decision: {target_gate_decision})",
             "demoted": f"v{demoted} (now previous_champion: rolling back again returns to it)",
             "forced": record["forced"], "audit record": f"#{record['seq']} in {AUDIT_TABLE}"},
            severity="critical" if record["forced"] else "warning",
            links={"mlflow_version": self.registry.version_ui_url(name, champion),
                   "previous_version": self.registry.version_ui_url(name, demoted)},
        )

    # -- internals (the caller holds the lock) -------------------------------------------------
    def _move_champion(self, model_name: str, current: str | None, target: str, actor: str, reason: str) -> None:
        if current is not None:
            self.registry.set_alias(model_name, PREVIOUS_CHAMPION, current)
        self.registry.set_alias(model_name, CHAMPION, target)
        self.registry.tag_version(model_name, target, {
            "promoted_at": _now(), "promoted_by": actor, "promoted_from": current or "none",
            "promotion_reason": reason,
        })

    def _append(self, model_name: str, action: str, version: str | None, from_version: str | None,
                to_version: str | None, actor: str, reason: str, evidence: dict[str, Any],
                forced: bool = False) -> dict:
        record = {
            "recorded_at": _now(), "model_name": model_name, "action": action, "version": version,
            "from_version": from_version, "to_version": to_version, "actor": actor, "reason": reason,
            "evidence": json.dumps(evidence, default=str, sort_keys=True), "forced": forced,
        }
        with self.warehouse.connect() as con:
            con.execute("create schema if not exists governance")
            con.execute(
                f"""create table if not exists {AUDIT_TABLE} (
                    seq bigint primary key, recorded_at timestamp, model_name varchar, action varchar, version varchar,
                    from_version varchar, to_version varchar, actor varchar, reason varchar,
                    evidence varchar, forced boolean)"""
            )
            seq = con.execute(f"select coalesce(max(seq), 0) + 1 from {AUDIT_TABLE}").fetchall()[0][0]
            con.execute(
                f"insert into {AUDIT_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, datetime.fromisoformat(record["recorded_at"]).replace(tzinfo=None), model_name, action, version, from_version, to_version, actor, reason,
                 record["evidence"], forced],
            ).fetchall()
        return {"seq": int(seq), **record}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
