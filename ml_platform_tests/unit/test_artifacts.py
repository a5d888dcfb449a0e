"""The artifact digest: one byte, one name, one file more or less changes it; where the files are does not."""

import shutil

import pytest

from ml_platform.lib.artifacts import ArtifactIntegrityError, artifact_digest, verify_digest


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {sklearn: {}}\n")
    (root / "model.skops").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "requirements.txt").write_text("scikit-learn==1.9\n")
    return root


def test_the_same_files_anywhere_give_the_same_digest(model_dir, tmp_path):
    copy = shutil.copytree(model_dir, tmp_path / "elsewhere" / "copy")
    assert artifact_digest(model_dir) == artifact_digest(copy)
    assert len(artifact_digest(model_dir)) == 64


def test_one_changed_byte_changes_the_digest(model_dir):
    before = artifact_digest(model_dir)
    data = bytearray((model_dir / "model.skops").read_bytes())
    data[1000] ^= 0x01
    (model_dir / "model.skops").write_bytes(bytes(data))
    assert artifact_digest(model_dir) != before


@pytest.mark.parametrize("change", ["rename", "add", "remove", "move_bytes_between_files"])
def test_names_and_file_boundaries_count(model_dir, change):
    before = artifact_digest(model_dir)
    if change == "rename":
        (model_dir / "MLmodel").rename(model_dir / "MLmodel2")
    elif change == "add":
        (model_dir / "extra.txt").write_text("")
    elif change == "remove":
        (model_dir / "sub" / "requirements.txt").unlink()
    else:  # the same bytes in total, split differently between two files
        (model_dir / "MLmodel").write_text("flavors: {sklearn: {}}\nx")
        (model_dir / "sub" / "requirements.txt").write_text("cikit-learn==1.9\n")
    assert artifact_digest(model_dir) != before


def test_mlflows_own_bookkeeping_file_is_not_hashed(model_dir):
    before = artifact_digest(model_dir)
    (model_dir / "registered_model_meta").write_text("model_name: churn\nmodel_version: '7'\n")
    assert artifact_digest(model_dir) == before


def test_a_missing_or_empty_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        artifact_digest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no files"):
        artifact_digest(tmp_path / "empty")


def test_verify_names_the_version_both_digests_and_the_fix():
    verify_digest("churn", "3", "a" * 64, "a" * 64)
    with pytest.raises(ArtifactIntegrityError) as caught:
        verify_digest("churn", "3", "b" * 64, "a" * 64)
    message = str(caught.value)
    assert message.startswith("churn v3: its model files hash to bbbbbbbbbbbb…, but evaluation recorded aaaaaaaaaaaa…")
    assert "changed after it was evaluated" in message and "retrain" in message
    with pytest.raises(ArtifactIntegrityError, match=r"churn v4 has no recorded artifact digest \(tag artifact_sha256\)"):
        verify_digest("churn", "4", "b" * 64, None)
