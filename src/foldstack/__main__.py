"""`python -m foldstack` (what local Batch jobs run): the `foldstack` command."""

from foldstack.cli import main

if __name__ == "__main__":
    main()
