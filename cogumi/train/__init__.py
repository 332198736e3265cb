"""Phase 1A/1B training settings."""

