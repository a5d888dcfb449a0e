"""The digest of a registered model's files: the proof that the artifact served is the one evaluated.

Evaluation records the digest on the model version (tag `artifact_sha256`); `ml-platform check` and the
serving process recompute it on the files they load and refuse a version whose files changed since.
One function computes it; everyone uses it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DIGEST_TAG = "artifact_sha256"

# MLflow (re)writes this file into a model directory whenever a registered version is downloaded (the
# model's name and version); it is bookkeeping, not the model, and it changes without anyone touching
# the model, so it is not hashed.
NOT_HASHED = frozenset({"registered_model_meta"})

_CHUNK = 1 << 20


class ArtifactIntegrityError(RuntimeError):
    """A model version's files do not hash to the digest recorded when it was evaluated."""


def artifact_digest(directory: Path) -> str:
    """SHA-256 over every file under `directory` (except NOT_HASHED), in sorted path order.

    Each file contributes its relative path and its bytes, so a renamed, added, removed or altered file
    changes the digest, and the digest does not depend on where the directory is.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in NOT_HASHED)
    if not files:
        raise FileNotFoundError(f"model directory {directory} holds no files")
    for path in files:
        relative = path.relative_to(directory).as_posix().encode()
        digest.update(len(relative).to_bytes(4, "big") + relative)  # length-prefixed: no ambiguous joins
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def verify_digest(model_name: str, version: str, actual: str, recorded: str | None) -> None:
    """Raise ArtifactIntegrityError unless `actual` is the digest recorded at evaluation."""
    if not recorded:
        raise ArtifactIntegrityError(
            f"{model_name} v{version} has no recorded artifact digest (tag {DIGEST_TAG}): it was never evaluated "
            "by this platform, so nothing proves its files are the evaluated ones; train and evaluate it with "
            "`ml-platform run`"
        )
    if actual != recorded:
        raise ArtifactIntegrityError(
            f"{model_name} v{version}: its model files hash to {actual[:12]}…, but evaluation recorded "
            f"{recorded[:12]}… (tag {DIGEST_TAG}): the artifact changed after it was evaluated. Restore the "
            "artifact store from a backup, or retrain and evaluate a new version"
        )
