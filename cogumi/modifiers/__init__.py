"""Phase 3 domain-modifier settings."""

