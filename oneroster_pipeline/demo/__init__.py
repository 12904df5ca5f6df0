"""The built-in demo OneRoster provider: a deterministic synthetic district served over real HTTP."""
