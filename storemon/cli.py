"""The `storemon` console script."""
import sys


def main(argv: list[str] | None = None) -> int:
    print("storemon", argv or sys.argv[1:])
    return 0
