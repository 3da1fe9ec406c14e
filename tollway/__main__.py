"""``python -m tollway``: the command line."""

from tollway.cli import main

main()
