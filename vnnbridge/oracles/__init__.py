"""vnnbridge.oracles."""
