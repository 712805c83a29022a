"""Running ``integrity`` in-process as a user would: one instance home, and whoever
``--as`` names signed in with their own personal token (kept in ``HOME/tokens.json``,
issued with :meth:`Cli.sign_up`); nobody signed in otherwise (the operator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

import cli


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    @property
    def tokens(self) -> dict[str, str]:
        path = self.home / "tokens.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def sign_up(self, person: str, issued_by: str | None = None) -> str:
        """Issue ``person`` a token (as ``issued_by``, or as the operator while no admin
        can sign in) and keep it for later ``--as person`` calls."""
        args = ["staff", "token", "issue", person]
        token = self(*args, *(["--as", issued_by] if issued_by else [])).stdout.strip()
        tokens = self.tokens | {person: token.splitlines()[-1]}
        (self.home / "tokens.json").write_text(json.dumps(tokens))
        return token

    def __call__(
        self,
        *args: str,
        code: int = 0,
        env: dict[str, str] | None = None,
        signed_in: str | None = None,
    ) -> Result:
        who = signed_in or (args[args.index("--as") + 1] if "--as" in args else None)
        env = dict(env or {})
        if who is not None and who in self.tokens:
            env.setdefault("INTEGRITY_TOKEN", self.tokens[who])
        res = self.runner.invoke(cli.main, [*args, "--home", str(self.home)], env=env)
        assert res.exit_code == code, (args, res.exit_code, res.stdout, res.stderr, res.exception)
        if code == 1:
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        return res

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--format", "json").stdout)
