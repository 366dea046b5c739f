"""The dashboard's panels, one component per module: each a ``pn.viewable.Viewer`` that
owns its state (parameters), its actions and its widgets, and redraws through param
dependencies (docs/dashboard.md#the-code). ``app.viewmodel.Session`` composes them."""
