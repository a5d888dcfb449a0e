"""The MLflow tracking store and model registry, behind narrow methods.

The registry speaks in aliases: `champion` is the live version, never "the latest version".
mlflow is imported inside the methods: this module is loaded with the Dagster definitions.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd

from ml_platform import settings

CHAMPION = "champion"      # the live version
CHALLENGER = "challenger"  # a version that passed the gate and awaits sign-off (risk tier medium and up)


@functools.cache
def _shared_client(uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


class RegistryError(LookupError):
    """Something named in the registry does not exist (a model, a version)."""


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server does not answer."""


_reachable_at: dict[str, float] = {}


def _require_reachable(uri: str) -> None:
    """A tracking server that is down fails here, before anything is written, with what to do about it.
    (A database-backed store fails on its own with the database's error.) Checked at most every 10 s."""
    import time
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")) or time.monotonic() - _reachable_at.get(uri, -1e9) < 10:
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailable(
            f"the MLflow tracking server at {settings.redacted(uri)} is not reachable ({reason}): start it (`make ui` "
            "runs one) or fix ML_PLATFORM_MLFLOW_TRACKING_URI. Nothing was written to the registry.") from None
    _reachable_at[uri] = time.monotonic()


class ModelRegistry(dg.ConfigurableResource):
    """MLflow tracking + registry. Defaults: the profile's store (SQLite under ML_PLATFORM_HOME, or PostgreSQL)
    and artifact root (settings.py)."""

    tracking_uri: str | None = None
    artifact_root: str | None = None

    def _uri(self) -> str:
        return self.tracking_uri or settings.platform_paths().tracking_uri

    def _artifact_root(self) -> str:
        """A directory (shared between machines in production) or an object-store URI such as s3://bucket/mlflow."""
        return self.artifact_root or settings.platform_paths().artifact_root

    def mlflow(self) -> Any:
        import os

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in CLI output
        # With a tracking server, the step's RetryPolicy is the retry loop (jobs.py); MLflow's own default retries
        # with backoff for minutes before a step even sees the error.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        import mlflow

        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        uri = self._uri()
        _require_reachable(uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return mlflow

    def client(self) -> Any:
        return self.mlflow().MlflowClient(tracking_uri=self._uri(), registry_uri=self._uri())

    def open(self) -> None:
        """Open the tracking and registry stores (MLflow caches them per process); a fresh SQLite store creates
        its tables here. Reads only."""
        self.client().search_registered_models(max_results=1)

    def experiment_id(self, name: str) -> str:
        mlflow = self.mlflow()
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        root = self._artifact_root()
        if len(urlsplit(root).scheme) > 1:  # s3://bucket/mlflow, mlflow-artifacts:/ (a tracking server's store)
            return mlflow.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}")
        location = Path(root) / name
        location.mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(name, artifact_location=str(location))

    def log_and_register(
        self,
        *,
        model_name: str,
        experiment: str,
        pipeline: Any,
        X_train: pd.DataFrame,
        training_frame: pd.DataFrame,
        dataset_source: str,
        dataset_digest: str,
        target: str,
        params: dict[str, Any],
        tags: dict[str, str],
        trusted_types: list[str],
        pip_requirements: list[str],
    ) -> tuple[str, str]:
        """Log a fitted pipeline as a new MLflow run and register it. Returns (run_id, version).

        The version is created, with all its tags, in one registry call after the model's files are fully
        written: a crash leaves at most an unregistered run, never a version without its lineage.
        """
        mlflow = self.mlflow()
        from mlflow.models import infer_signature

        example = X_train.head(5)
        # A classifier's signature is its probabilities (what serving answers); a regressor's its predictions.
        predict = pipeline.predict_proba if hasattr(pipeline, "predict_proba") else pipeline.predict
        signature = infer_signature(example, predict(example))
        with mlflow.start_run(experiment_id=self.experiment_id(experiment), run_name=f"train-{model_name}") as run:
            mlflow.set_tags(tags)
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            # Metadata only (source, digest, schema from a sample): mlflow.data.from_pandas re-infers the
            # schema over every row when logged, which takes ~12 s at 1M rows.
            from mlflow.data.dataset_source_registry import resolve_dataset_source
            from mlflow.data.meta_dataset import MetaDataset

            dataset = MetaDataset(
                source=resolve_dataset_source(dataset_source), name=f"{model_name}-training",
                digest=dataset_digest[:36], schema=infer_signature(training_frame.head(1000)).inputs,
            )
            mlflow.log_input(dataset, context="training", tags={"rows": str(len(training_frame)), "target": target})
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements,  # given, so MLflow skips its slow import-tracing inference
                skops_trusted_types=trusted_types,
            )
        registered = mlflow.register_model(info.model_uri, model_name, await_registration_for=60,
                                           tags={**tags, "training_run_id": run.info.run_id})
        return run.info.run_id, str(registered.version)

    def fail_runs_of(self, dagster_run_ids: list[str]) -> list[str]:
        """MLflow runs still RUNNING for Dagster runs whose process died are ended as FAILED (their model, if
        logged, was never registered)."""
        client, ended = self.client(), []
        for dagster_run_id in dagster_run_ids:
            for run in client.search_runs(
                    [e.experiment_id for e in client.search_experiments()],
                    f"tags.dagster_run_id = '{dagster_run_id}' and attributes.status = 'RUNNING'"):
                client.set_terminated(run.info.run_id, status="FAILED")
                ended.append(run.info.run_id)
        return ended

    def version_trained_from(self, model_name: str, training_key: str) -> Any | None:
        """The registered version whose `training_key` tag is `training_key` (same data, code, config and seed),
        or None. The tag is written with the version in one call, so a found version is complete."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client().search_model_versions(
                f"name = '{model_name}' and tags.training_key = '{training_key}'")
        except MlflowException:
            return None
        return min(found, key=lambda v: int(v.version)) if found else None

    def fetch_model(self, model_name: str, version: str, dst: Path) -> tuple[Path, str]:
        """Copy the version's model files into `dst`; returns the copy and its artifact digest. A model
        loaded from the copy is exactly the bytes that were hashed."""
        from ml_platform.lib.artifacts import artifact_digest

        mlflow = self.mlflow()
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}",
                                                         dst_path=str(dst)))
        return local, artifact_digest(local)

    def load_model(self, model_name: str, version: str, *, require_digest: bool = False) -> Any:
        """The version's fitted pipeline, its files checked against the digest recorded at evaluation
        (ArtifactIntegrityError if they changed since). A version with no recorded digest (not evaluated yet,
        or from before digests were recorded) loads, unless `require_digest`."""
        return self.load_model_with_digest(model_name, version, require_digest=require_digest)[0]

    def load_model_with_digest(self, model_name: str, version: str, *,
                               require_digest: bool = False) -> tuple[Any, str]:
        """`load_model`, and the digest of the files it was loaded from."""
        import tempfile

        from ml_platform.lib.artifacts import DIGEST_TAG, verify_digest

        mlflow = self.mlflow()
        recorded = self.version(model_name, version).tags.get(DIGEST_TAG)
        with tempfile.TemporaryDirectory() as tmp:
            local, digest = self.fetch_model(model_name, version, Path(tmp))
            if recorded or require_digest:
                verify_digest(model_name, str(version), digest, recorded)
            return mlflow.sklearn.load_model(str(local)), digest

    def version(self, model_name: str, version: str) -> Any:
        return self.client().get_model_version(model_name, version)

    def champion(self, model_name: str) -> Any | None:
        """The champion ModelVersion, or None when the model has none (or is not registered yet)."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            return client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException:
            return None

    def resolved_tracking_uri(self) -> str:
        return self._uri()

    def champion_version(self, model_name: str) -> str | None:
        return self.alias_version(model_name, CHAMPION)

    def alias_version(self, model_name: str, alias: str) -> str | None:
        """The version an alias points to, as a string (MLflow returns int or str depending on the store)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            return None

    def aliases(self, model_name: str) -> dict[str, str]:
        """Every alias of the model with its version, in one registry call ({} if not registered).
        The serving process calls this several times a second, so the client is reused."""
        from mlflow.exceptions import MlflowException

        try:
            model = _shared_client(self._uri()).get_registered_model(model_name)
        except MlflowException:
            return {}
        return {alias: str(version) for alias, version in model.aliases.items()}

    def store_fingerprint(self) -> tuple | None:
        """A cheap token that changes whenever the SQLite store is written (None for a server store:
        there, every poll asks the registry). Lets a poller skip the ~10 ms query when nothing changed."""
        uri = self._uri()
        if not uri.startswith("sqlite:///"):
            return None
        database = Path(uri.removeprefix("sqlite:///"))
        stats = []
        for path in (database, database.with_name(database.name + "-wal")):
            try:
                st = path.stat()
                stats.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stats.append(None)
        return tuple(stats)

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Only Governance moves `champion` (under its lock); other aliases may be set directly."""
        self.client().set_registered_model_alias(model_name, alias, str(version))

    def delete_alias(self, model_name: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client().delete_registered_model_alias(model_name, alias)
        except MlflowException:
            pass

    def find_version(self, model_name: str, version: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.version(model_name, str(version))
        except MlflowException:
            return None

    def tag_version(self, model_name: str, version: str, tags: dict[str, Any]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, str(value)[:5000])

    def untag_version(self, model_name: str, version: str, keys: list[str]) -> None:
        client, present = self.client(), self.version(model_name, version).tags
        for key in keys:
            if key in present:
                client.delete_model_version_tag(model_name, str(version), key)

    def describe(self, model_name: str, text: str, *, version: str | None = None) -> None:
        """The description the MLflow UI shows at the top of the model's page (or of one version's)."""
        if version is None:
            self.client().update_registered_model(model_name, description=text)
        else:
            self.client().update_model_version(model_name, str(version), description=text)

    def log_to_run(self, run_id: str, *, metrics: dict[str, float] | None = None, files: list[Path] = (),
                   artifact_dir: str | None = None) -> None:
        client = self.client()
        for key, value in (metrics or {}).items():
            client.log_metric(run_id, key, float(value))
        for path in files:
            client.log_artifact(run_id, str(path), artifact_dir)

    def download_artifacts(self, run_id: str, path: str, destination: Path) -> Path:
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.client().download_artifacts(run_id, path, str(destination)))

    def run(self, run_id: str) -> Any:
        return self.client().get_run(run_id)

    def versions(self, model_name: str) -> list[Any]:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client().search_model_versions(f"name = '{model_name}'")
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def run_ui_url(self, run_id: str) -> str:
        run = self.run(run_id)
        return f"{settings.mlflow_ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def version_ui_url(self, model_name: str, version: str) -> str:
        return f"{settings.mlflow_ui_url()}/#/models/{model_name}/versions/{version}"

    def artifact_uri(self, run_id: str, path: str) -> str:
        return f"{self.run(run_id).info.artifact_uri}/{path}"

    def tag_model(self, model_name: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_registered_model_tag(model_name, key, str(value))

    def inventory(self) -> list[dict]:
        """Every registered model in the store: owner, risk tier, champion, versions, last training."""
        from datetime import UTC, datetime

        models = []
        for registered in self.client().search_registered_models():
            versions = self.versions(registered.name)
            last = max((v.creation_timestamp for v in versions), default=None)
            models.append({
                "name": registered.name,
                "owner": registered.tags.get("owner", "-"),
                "risk_tier": registered.tags.get("risk_tier", "-"),
                "champion": self.champion_version(registered.name),
                "versions": len(versions),
                "last_trained": datetime.fromtimestamp(last / 1000, UTC).isoformat(timespec="seconds") if last else "-",
            })
        return sorted(models, key=lambda m: m["name"])

    def require_version(self, model_name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.version(model_name, version)
        except MlflowException:
            raise RegistryError(f"model '{model_name}' has no version {version}") from None
