"""``python -m femtotcp``: the command line."""

from femtotcp.cli import main

raise SystemExit(main())
