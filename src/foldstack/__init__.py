"""foldstack: protein structure prediction at scale on AWS, with a local mode."""

__version__ = "0.1.0"
