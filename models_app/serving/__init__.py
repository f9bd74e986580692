"""Sync serving: warm runner processes owned by the model host, called by the web process."""
