"""Accounts app: the project's custom user model."""
