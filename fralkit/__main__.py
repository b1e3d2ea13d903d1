"""Command line: ``python -m fralkit reproduce [--profile smoke|quick|gpu|paper] [--only 01 ...] [--out DIR]``, and
``python -m fralkit seed-spread NAME [--seeds 0,1,2] [--split-seed S] [--set KEY=VALUE] [--knob KNOB=VALUE]`` (a JIN
preset's seed spread of its Init. AT row, ``fralkit.studies.calibration.seed_spread``), and ``python -m fralkit compute NN
[--profile P] [--set KEY=VALUE] [--results DIR]`` (a notebook's study runs into the result store without Jupyter,
``fralkit.studies.compute``)."""
import sys

from .studies.calibration import main as seed_spread_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["seed-spread"]:
        return seed_spread_main(argv[1:])
    if argv[:1] == ["compute"]:
        from .studies import main as compute_main

        return compute_main(argv[1:])
    # imported here: reproduce needs Jupyter's packages, which seed-spread does not (a bare GPU image lacks them)
    from .reproduce import main as reproduce_main

    return reproduce_main(argv)


if __name__ == "__main__":
    sys.exit(main())
