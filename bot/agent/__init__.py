"""The coding agent: the tools a model calls, and (later) the loop that calls them."""
