"""Public impact: profile page, Impact Counter widget, badges, public JSON and
the private customer impact page."""
