"""Agent signals -> event-time windowed activity features per entity, on a compacted topic (exactly once)."""
