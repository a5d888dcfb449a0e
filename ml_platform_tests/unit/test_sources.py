"""Reading a file source as the config says it is written, and saying what to change when it is not."""

import pandas as pd
import pytest

from ml_platform.config import load_config
from ml_platform.lib.sources import SourceError, load_batch
from ml_platform_tests.conftest import write_config


def test_a_file_saved_again_with_another_separator_is_named_as_such(tmp_path):
    """The config says ';' (as init found it); next week's export was saved with commas."""
    frame = pd.DataFrame({"customer_id": ["c1", "c2"], "tenure_months": [3.5, 12.0]})
    frame.to_csv(tmp_path / "batch.csv", index=False)
    config = load_config(write_config(tmp_path, {"data": {"source": {
        "kind": "file", "path": "batch.csv", "csv": {"separator": ";", "decimal": ","}}}}), check_imports=False)
    with pytest.raises(SourceError) as refused:
        load_batch(config, batch=None, ingested=[], read_table=None)
    assert str(refused.value) == (
        f"source file {tmp_path / 'batch.csv'} reads as one column ('customer_id,tenure_months') with separator ';', "
        "but its fields are separated by ',': set data.source.csv.separator to ',' (and decimal to '.'), or save the "
        "file as before")

    frame.to_csv(tmp_path / "batch.csv", index=False, sep=";", decimal=",")  # as before: read as the config says
    read = load_batch(config, batch=None, ingested=[], read_table=None).frame
    assert read["tenure_months"].tolist() == [3.5, 12.0]
