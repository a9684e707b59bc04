"""People of an account who sign in to the dashboard: users, sessions, one-time links."""
