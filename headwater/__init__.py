"""Headwater: a real-time ingestion platform for AI agents, built from one platform spec."""
