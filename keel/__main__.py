"""`python -m keel ...` is the `keel` command."""

from .cli import main

main()
