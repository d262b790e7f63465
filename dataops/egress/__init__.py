"""Egress: the published data put into the hands and systems that use it."""
