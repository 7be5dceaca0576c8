"""Grammar files (found from a checkout and from an installed wheel)."""
