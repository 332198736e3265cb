"""Phase 5 serving settings."""

