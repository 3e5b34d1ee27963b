"""The bundled workflows (`*.yml`), found by `bot.workflow.schema.load_workflows`."""
