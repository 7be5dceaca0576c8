"""vnnbridge.vnncomp."""
