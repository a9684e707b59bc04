"""OpenImpact: an open, self-hostable server for the 1ClickImpact API v1."""

__version__ = "0.1.0"
