"""Workflows: YAML files (`schema`), their graph (`dag`), templates, and the engine that runs them."""
