"""The `triage` command line. It only translates: the pipeline, workspace and evals do the work.

Exit codes: 0 success; 1 some input lines were bad (the rest were processed) or an evaluation
gate failed; 2 invalid input or usage; 3 the workspace, knowledge base or vector store failed.
"""

from triage.cli import commands, data, jobs, loop, serve  # noqa: F401  (importing registers the commands)
from triage.cli.base import cli, main, render_table

__all__ = ["cli", "main", "render_table"]
