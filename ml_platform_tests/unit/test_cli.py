"""The command line: --config and --home are accepted before or after the command."""

from ml_platform.cli import _parser


def test_config_and_home_before_or_after_the_command():
    before = _parser().parse_args(["--config", "a.yaml", "--home", "h", "check", "--only", "model"])
    after = _parser().parse_args(["check", "--config", "b.yaml", "--json", "--only", "model", "--only", "data"])
    neither = _parser().parse_args(["serve", "--version", "3", "--no-prediction-log"])
    assert (before.config, before.home, before.only) == ("a.yaml", "h", ["model"])
    assert (after.config, after.home, after.json, after.only) == ("b.yaml", None, True, ["model", "data"])
    assert (neither.config, neither.version, neither.no_prediction_log) == (None, "3", True)
