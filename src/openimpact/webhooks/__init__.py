"""Webhook endpoints, signed delivery of the account's events, and the events feed."""
