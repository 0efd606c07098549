"""``python -m vlal ...``: the ``vlal`` command line."""

from .cli import console_main

console_main()
