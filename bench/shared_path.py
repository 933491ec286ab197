"""Where the shared benchmark harness (../shared/bench) is, for the bench scripts."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_bench() -> Path:
    """$SHARED_BENCH, else ../shared/bench beside this checkout, or beside the main checkout
    when this one is a git worktree (its .git file names <main>/.git/worktrees/<name>)."""
    if "SHARED_BENCH" in os.environ:
        return Path(os.environ["SHARED_BENCH"]).resolve()
    beside = REPO.parent / "shared" / "bench"
    dot_git = REPO / ".git"
    if not beside.exists() and dot_git.is_file():
        gitdir = Path(dot_git.read_text().split(":", 1)[1].strip())
        return gitdir.parent.parent.parent.parent / "shared" / "bench"
    return beside
