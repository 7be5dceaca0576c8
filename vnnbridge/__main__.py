"""``python -m vnnbridge``."""

from vnnbridge.cli import run

if __name__ == "__main__":
    run()
