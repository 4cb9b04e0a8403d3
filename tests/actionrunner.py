"""Runs action.yml's steps on this machine as a GitHub runner would, for the tests: each `run` step in order with
its `${{ }}` expressions substituted and `if:` evaluated, the runner's files (GITHUB_OUTPUT, GITHUB_PATH,
RUNNER_TEMP) in a folder, and the two actions it uses stood in for: actions/cache (a folder keyed by the
cache key, restored before and saved after) and actions/upload-artifact (a copy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Runner:
    home: Path  # RUNNER_TEMP, the cache and the artifacts live here
    workspace: Path  # the user's repository, where steps run
    path: list[str] = field(default_factory=list)  # GITHUB_PATH entries added so far
    log: str = ""

    def __post_init__(self) -> None:
        for d in ("temp", "cache", "artifacts"):
            (self.home / d).mkdir(parents=True, exist_ok=True)

    def run(self, inputs: dict[str, str], job: str = "test") -> tuple[dict[str, str], dict[str, Any]]:
        """One use of the action: (its outputs, each step's outcome and outputs by id)."""
        action = yaml.safe_load((ROOT / "action.yml").read_text())
        values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()} | inputs
        steps: dict[str, Any] = {}
        saves: list[tuple[Path, Path]] = []
        for i, step in enumerate(action["runs"]["steps"]):
            sid = step.get("id", f"step{i}")
            ctx = {"inputs": values, "steps": steps, "runner": {"temp": str(self.home / "temp")},
                   "github": {"action_path": str(ROOT), "job": job, "run_attempt": "1"}}
            if "if" in step and not _truthy(step["if"], ctx):
                steps[sid] = {"outcome": "skipped", "outputs": {}}
                continue
            if "uses" in step:
                steps[sid] = self._uses(step, ctx, saves)
                continue
            env = {k: _sub(str(v), ctx) for k, v in step.get("env", {}).items()}
            outputs = self._shell(_sub(step["run"], ctx), env)
            steps[sid] = {"outcome": "success", "outputs": outputs}
        for src, dst in saves:  # actions/cache saves at the end of the job
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        ctx = {"steps": steps, "inputs": values}
        return {k: _sub(str(v["value"]), ctx) for k, v in action["outputs"].items()}, steps

    def _shell(self, script: str, env: dict[str, str]) -> dict[str, str]:
        output, gh_path = self.home / "output", self.home / "path"
        output.write_text("")
        gh_path.write_text("")
        full = {**os.environ, **env, "RUNNER_TEMP": str(self.home / "temp"), "GITHUB_OUTPUT": str(output),
                "GITHUB_PATH": str(gh_path), "GITHUB_ACTION_PATH": str(ROOT),
                "PATH": os.pathsep.join([*reversed(self.path), os.environ["PATH"]])}
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=self.workspace, env=full, capture_output=True,
                              text=True, timeout=900, check=False)
        self.log += proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise StepFailed(proc.returncode, self.log)
        self.path += [p for p in gh_path.read_text().splitlines() if p]
        return dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)

    def _uses(self, step: dict[str, Any], ctx: dict[str, Any], saves: list[tuple[Path, Path]]) -> dict[str, Any]:
        args = {k: _sub(str(v), ctx) for k, v in step.get("with", {}).items()}
        if step["uses"].startswith("actions/cache@"):
            target, stored = Path(args["path"]), self.home / "cache" / args["key"] / Path(args["path"]).name
            hit = stored.exists()
            if hit:
                shutil.copy(stored, target)
            saves.append((target, stored))
            return {"outcome": "success", "outputs": {"cache-hit": "true" if hit else "false"}}
        if step["uses"].startswith("actions/upload-artifact@"):
            shutil.copytree(args["path"], self.home / "artifacts" / args["name"], dirs_exist_ok=True)
            return {"outcome": "success", "outputs": {}}
        raise AssertionError(f"no stand-in for {step['uses']}")


class StepFailed(Exception):
    def __init__(self, code: int, log: str) -> None:
        super().__init__(f"step failed with {code}:\n{log[-4000:]}")
        self.code, self.log = code, log


def _lookup(ref: str, ctx: dict[str, Any]) -> Any:
    cur: Any = ctx
    for part in ref.split("."):
        cur = cur.get(part, "") if isinstance(cur, dict) else ""
    return cur


def _sub(text: str, ctx: dict[str, Any]) -> str:
    return EXPR.sub(lambda m: str(_lookup(m.group(1), ctx)), text)


def _truthy(condition: str, ctx: dict[str, Any]) -> bool:
    """The expressions action.yml uses: references, string literals, ==, !=, && and ||."""
    expr = EXPR.sub(lambda m: m.group(1), condition)
    expr = re.sub(r"[A-Za-z_][\w-]*(?:\.[\w-]+)+", lambda m: repr(str(_lookup(m.group(0), ctx))), expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    return bool(eval(expr, {"__builtins__": {}}))
