"""`python -m hub` runs the hub command line."""

from hub.cli import main

main()
