"""Phase 0 curation settings."""

