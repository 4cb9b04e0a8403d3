"""`testbed cni`: CHECK of every pod's network, and the conformance battery for a CNI plugin on a running lab."""

from __future__ import annotations

import json
import sys

import click

from testbed.cli.base import _lab, json_option, lab_option, main, out, styled

MARKS = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "skip": ("SKIP", "yellow")}


@main.group()
def cni() -> None:
    """Pods' networks as CNI sees them.

    \b
    Examples:
      testbed cni check
      testbed cni test ./bin ./my-plugin.conflist
      testbed cni test --preset reference
    """


@cni.command("check")
@lab_option
@json_option
def check_cmd(lab_name: str | None, as_json: bool) -> None:
    """CNI CHECK of every pod (with the cached results, as the kubelet's runtime runs it); with the built-in
    wiring, the kernel's view of each pod against the plan. Exit 0 when all pass, 1 otherwise.

    \b
    Examples:
      testbed cni check
      testbed cni check --lab cni --json
    """
    from testbed.observe import cni as observe

    found = observe.check(_lab(lab_name))
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for f in found:
            mark = MARKS["pass" if f["ok"] else "fail"]
            out.print(styled(mark, f"  {f['pod']}" + (f": {f['error']}" if f["error"] else "")))
    sys.exit(0 if all(f["ok"] for f in found) else 1)


@cni.command("test")
@lab_option
@click.argument("bin_dir", required=False, metavar="DIR")
@click.argument("conflist", required=False, metavar="CONFLIST")
@click.option("--preset", type=click.Choice(["builtin", "reference"]),
              help="Test testbed's own plugin, or Debian's reference plugins, instead of DIR and CONFLIST.")
@json_option
def test_cmd(lab_name: str | None, bin_dir: str | None, conflist: str | None, preset: str | None,
             as_json: bool) -> None:
    """Run the conformance battery against a CNI plugin: DIR holds its binaries, CONFLIST chains it (with
    {{podCIDR}}, {{podCIDRv6}} and {{nodeName}} filled in per node). Each check cites the part of the CNI spec
    it tests: VERSION, ADD's result against the netns, a second ADD, DEL (idempotent, after a failed ADD,
    releasing IPAM), CHECK finding a removed address, prevResult chaining, error format, and pods on two nodes
    reaching each other with no NAT. Exit 0 when nothing fails, 1 otherwise.

    \b
    Examples:
      testbed cni test ./bin ./my-plugin.conflist
      testbed cni test --preset builtin --json
    """
    from testbed.errors import InvalidInput, Problem
    from testbed.observe import cni as observe

    if preset is None and (bin_dir is None or conflist is None):
        raise InvalidInput([Problem("testbed cni test", "DIR CONFLIST", "give both, or --preset")])
    found = observe.test(_lab(lab_name), bin_dir, conflist, preset)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for f in found:
            out.print(styled(MARKS[f["status"]], f"  {f['check']}  [{f['spec']}]"))
            if f["detail"]:
                out.print(f"        {f['detail']}")
    sys.exit(1 if any(f["status"] == "fail" for f in found) else 0)
