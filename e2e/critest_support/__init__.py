"""The pieces of `e2e/critest`: runtimes under test, the critest run, and its report."""
