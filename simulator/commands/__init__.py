"""agent-sim subcommands: one module each, found by simulator.cli.discover()."""
