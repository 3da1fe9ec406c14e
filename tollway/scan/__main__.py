"""``python -m tollway.scan PATH``: the scan command on its own."""

from tollway.scan.cli import main

main()
