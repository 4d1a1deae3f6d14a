"""Streaming into MRML views: one streaming scene per MRML scene owns the engine and cache, and one
streamer per view and source turns what the core plans and composes into a proxy volume node."""
