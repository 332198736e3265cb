"""``python -m cogumi`` = the ``cogumi`` command."""

from cogumi.cli import main

main()
