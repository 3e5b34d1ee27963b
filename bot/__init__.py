"""Archon Bot: plan with a strong model, implement with a cheap one."""
