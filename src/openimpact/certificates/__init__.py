"""Public impact certificates: HTML page, share image and printable PDF."""
