"""Scripts the `scripted` provider finds by name (the demo's)."""
