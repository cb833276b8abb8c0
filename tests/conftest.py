import os

# Fixed terminal width so rich output is stable under CliRunner.
os.environ["COLUMNS"] = "120"
os.environ.setdefault("TERM", "dumb")
