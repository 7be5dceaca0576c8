"""vnnbridge.vnnlib."""
