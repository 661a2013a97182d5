"""Compile the fused ALS kernel ahead of time: ``python -m hybrec.als.build [--build-dir DIR] [--verbose]``."""

from __future__ import annotations

import argparse
import logging
import sys

from hybrec.als.kernel import default_build_directory, load_kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=None, help=f"cache folder (default {default_build_directory()})")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        module = load_kernel(args.build_dir, verbose=args.verbose)
    except RuntimeError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 1
    print(f"fused ALS kernel ready: {module.__file__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
