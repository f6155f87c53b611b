"""Command-line wiring: one module per subcommand group (`register(subparsers)`), and for `analyze`/`live` the
plug-ins' options and builders (`add_arguments(parser)`, `build(args, config)`); listed in ids/cli.py.

Libraries never import from here (tests/test_imports.py checks): what a command needs from a library is a
library function, and a command module only parses arguments, calls it and prints.
"""
