"""The verbs about this machine rather than a lab: `images` (build, save, load, tag, prune), `doctor` and
`version`."""

from __future__ import annotations

import json
import sys

import click

from testbed.cli.base import _run, err, json_option, main, out, styled


@main.group()
def images() -> None:
    """The node image: built from Debian packages, tagged by a hash of its recipe.

    \b
    Examples, for a CI cache (key on the tag, keep the saved file):
      testbed images tag                      # testbed-node:<hash>
      testbed images save node.tar.gz         # after a build
      testbed images load node.tar.gz         # on the next run, instead of a build
    """


@images.command()
@click.option("--force", is_flag=True, help="Rebuild even if the image is up to date.")
def build(force: bool) -> None:
    """Build the node image from Debian packages (no registry needed; about 35 s the first time).

    \b
    Examples:
      testbed images build
      testbed images build --force      # then `testbed images prune` removes the one it replaced
    """
    from testbed.runtime import docker as rt
    from testbed.runtime import images as img

    client = rt.connect()
    _run(lambda s: (s("Building the node image"), img.build(client, s.say, force)))


@images.command()
def tag() -> None:
    """Print the tag the current recipe gives (no Docker engine needed): a cache key.

    \b
    Example:
      testbed images tag        # testbed-node:<hash of the recipe>
    """
    from testbed.runtime import images as img

    click.echo(img.reference())


@images.command()
@click.argument("file", type=click.Path(dir_okay=False))
def save(file: str) -> None:
    """Save the current node image to FILE (gzip-compressed `docker save`).

    \b
    Example:
      testbed images save node.tar.gz
    """
    from testbed.runtime import docker as rt
    from testbed.runtime import images as img

    client = rt.connect()
    _run(lambda s: (s("Saving the node image"), img.save(client, file, s.say)))


@images.command()
@click.argument("file", type=click.Path(dir_okay=False))
def load(file: str) -> None:
    """Load the node image from FILE; refused (exit 2) when FILE is not a saved image, or holds another tag.

    \b
    Example:
      testbed images load node.tar.gz
    """
    from testbed.runtime import docker as rt
    from testbed.runtime import images as img

    client = rt.connect()
    _run(lambda s: (s("Loading the node image"), img.load(client, file, s.say)))


@images.command()
def prune() -> None:
    """Remove superseded node images that no container uses: older tags, and the untagged ones a rebuild
    leaves behind.

    \b
    Example:
      testbed images prune
    """
    from testbed.runtime import docker as rt
    from testbed.runtime import images as img

    if not img.prune(rt.connect(), say=click.echo):
        click.echo("nothing to prune")


@main.command()
@json_option
def version(as_json: bool) -> None:
    """The package's version, the node image tag its recipe gives, and whether that image is here.

    \b
    Examples:
      testbed version
      testbed version --json
    """
    from testbed.runtime.doctor import versions

    data = versions()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    here = "present" if data["imagePresent"] else "not built"
    out.print(f"testbed {data['package']}\nnode image {data['image']} ({here})")


@main.command()
@json_option
def doctor(as_json: bool) -> None:
    """Check this machine for what labs need: the Docker engine, kernel features, capabilities, mmdebstrap,
    disk, and say how to fix what is missing. Exit 0 when labs can run, 4 when something required is missing.

    \b
    Example:
      testbed doctor
    """
    from testbed.runtime.doctor import checks

    results = checks()
    failed = [c for c in results if not c["ok"] and c["required"]]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": results}, indent=2))
    else:
        for c in results:
            mark = ("ok  ", "green") if c["ok"] else (("FAIL", "red") if c["required"] else ("warn", "yellow"))
            out.print(styled(mark, f" {c['name']}: {c['detail']}"))
            if not c["ok"] and c["fix"]:
                out.print(f"       fix: {c['fix']}")
        if failed:
            err.print(f"{len(failed)} required check(s) failed")
    sys.exit(4 if failed else 0)
