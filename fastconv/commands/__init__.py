"""CLI subcommands of ``fastconv``; see fastconv/cli.py."""
