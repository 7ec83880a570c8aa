"""One module per `swarm-node` subcommand: each has `add_arguments(parser)` and `run(args) -> int`."""
