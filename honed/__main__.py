"""``python -m honed ...`` (and ``torchrun -m honed train ...``)."""

from honed.cli import main

main()
