"""One typed config tree: its models, where values come from, and its errors."""
