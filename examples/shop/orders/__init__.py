"""Orders app: orders and their line items."""
