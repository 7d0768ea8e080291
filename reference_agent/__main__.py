"""`python -m reference_agent`: the same as the `reference-agent` command."""
import sys

from reference_agent.entry import main

sys.exit(main())
