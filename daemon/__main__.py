"""`python -m daemon` is the `helpdesk` command."""
from daemon.cli import main

raise SystemExit(main())
