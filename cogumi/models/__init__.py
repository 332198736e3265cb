"""Model layer: registry, resource planning, loading, and the one inference interface."""
