"""Monthly schedules: an impact created once per period, by the worker."""
