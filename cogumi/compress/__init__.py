"""Phase 2 compression settings."""

