"""vnnbridge: trustworthy robustness certifications with any VNN-COMP verifier as the oracle."""

__version__ = "0.1.0"
__all__ = ["__version__"]
