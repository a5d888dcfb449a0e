"""Pure logic with no Dagster in it: easy to unit-test and to reuse from the CLI and the server."""
