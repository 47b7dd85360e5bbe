"""A GitHub REST emulator over a real bare git repository, with the repository's CI check.

Start it in-process::

    emu = GitHubEmulator(bare_repo, "owner/name", tokens={"t0ken": "alice"})
    server = serve_in_thread(emu.app)
    emu.bind(server.url)
    gh = github.Github(base_url=emu.api_url, auth=github.Auth.Token("t0ken"), ...)
"""

from sandbox.github.emulator import GitHubEmulator
from sandbox.github.faults import Fault, Faults, Stats
from sandbox.github.validation import CHECK_NAME

__all__ = ["CHECK_NAME", "Fault", "Faults", "GitHubEmulator", "Stats"]
