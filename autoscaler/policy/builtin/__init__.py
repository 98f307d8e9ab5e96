"""Built-in policy plugins. They are published through the same ``autoscaler.policies`` entry
points as third-party plugins (see pyproject.toml), never imported by name elsewhere."""
