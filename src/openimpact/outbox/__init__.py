"""The outbox: messages that leave the system (emails, and webhook events to
come), written in the transaction of the change they report and delivered by
the worker. A room below the domains: impacts, lifecycle, budgets and users
write to it without knowing how a message is delivered."""
