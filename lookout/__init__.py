"""The `lookout` command: one entry point whose subcommands start each Lookout process."""
