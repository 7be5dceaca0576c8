"""The VNN-COMP side: harness runs, result files, benchmark export, oracle comparison, VNN-LIB 2.0 solver."""

__all__: list[str] = []
