"""Accounts, groups and tokens, and the shared base every app builds on (jobs, error shape,
pagination, encryption, uploads). The bottom layer: it imports no other app of the project."""
