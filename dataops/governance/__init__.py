"""Governance: the metadata protocol and catalog, permissions (policy, users, gateway, audit), archiving."""
