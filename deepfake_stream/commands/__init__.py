"""One module per sub-command: HELP (one line), SETTINGS (the settings groups whose flags it
takes; every setting is still read from the environment), EXAMPLES (real invocations, shown
by its --help), add_arguments(parser), run(args, settings) -> int."""
