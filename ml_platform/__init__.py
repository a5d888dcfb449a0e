"""ml_platform: an orchestrator-native MLOps platform on Dagster."""
