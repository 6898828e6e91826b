"""One module per stage. Each exposes `add_parser(subparsers)` for the `distill` command and a `run(config)`
function that writes one output directory and returns a `StageResult`."""
