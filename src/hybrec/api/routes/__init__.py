"""One module per resource; a module with a ``router`` (and optionally ``setup(app, settings)``) is a component."""
