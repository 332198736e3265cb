"""Phase 4 router settings."""

