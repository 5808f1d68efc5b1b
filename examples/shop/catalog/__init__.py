"""Catalog app: categories and products."""
