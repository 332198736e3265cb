"""``python -m cogumi`` = the ``cogumi`` command."""

from cogumi.cli.application import main

main()
