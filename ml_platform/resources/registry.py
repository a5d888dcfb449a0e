"""The MLflow tracking store and model registry, behind narrow methods.

The registry speaks in aliases: `champion` is the live version, never "the latest version".
mlflow is imported inside the methods: this module is loaded with the Dagster definitions.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

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


class ModelRegistry(dg.ConfigurableResource):
    """MLflow tracking + registry. Defaults: SQLite store and local artifacts under ML_PLATFORM_HOME."""

    tracking_uri: str | None = None
    artifact_root: str | None = None

    def _uri(self) -> str:
        return self.tracking_uri or settings.platform_paths().tracking_uri

    def _artifact_root(self) -> Path:
        return Path(self.artifact_root) if self.artifact_root else settings.platform_paths().artifact_root

    def mlflow(self) -> Any:
        import os

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in CLI output
        import mlflow

        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(self._uri())
        mlflow.set_registry_uri(self._uri())
        return mlflow

    def client(self) -> Any:
        return self.mlflow().MlflowClient(tracking_uri=self._uri(), registry_uri=self._uri())

    def experiment_id(self, name: str) -> str:
        mlflow = self.mlflow()
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self._artifact_root() / name
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

        The version is created only after the model's files are fully written, so a crash leaves
        at most an unregistered run, never a half-registered version.
        """
        mlflow = self.mlflow()
        from mlflow.models import infer_signature

        example = X_train.head(5)
        signature = infer_signature(example, pipeline.predict_proba(example))
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
                registered_model_name=model_name,
                await_registration_for=60,
            )
        version = str(info.registered_model_version)
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
        client.set_model_version_tag(model_name, version, "training_run_id", run.info.run_id)
        return run.info.run_id, version

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

    def log_to_run(self, run_id: str, *, metrics: dict[str, float] | None = None, files: list[Path] = (),
                   artifact_dir: str | None = None) -> None:
        client = self.client()
        for key, value in (metrics or {}).items():
            client.log_metric(run_id, key, float(value))
        for path in files:
            client.log_artifact(run_id, str(path), artifact_dir)

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
