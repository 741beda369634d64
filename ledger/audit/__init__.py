"""Tamper evidence and audit: the hash chain, its recorders, verification."""
