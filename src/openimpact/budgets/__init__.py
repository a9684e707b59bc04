"""Unit prices, monthly budget caps and their spend (issue 11)."""
