"""vnnbridge.search."""
