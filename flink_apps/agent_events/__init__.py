"""Raw agent events -> validated, deduplicated, enriched signals (exactly once) and dead letters."""
