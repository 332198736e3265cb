"""Phase 1B/1C evaluation settings."""

