"""What people read: values printed as they are (an IPv6 address with `:100:` is not an emoji code, brackets
are not markup) and whole when the output is a pipe, as kubectl prints them."""

from testbed.cli import base, show

STATUS = {
    "name": "bgp", "phase": "ready", "reasons": [], "hint": "", "network": "bgp", "dualStack": True,
    "podMTU": 1500, "underlay": "100.64.1.0/24",
    "nodes": [{"name": "node1", "container": "bgp-node1", "state": "running", "agent": "answering",
               "underlayIP": "100.64.1.11", "podCIDRs": ["10.244.0.0/24", "fd00:10:244:100::/64"]}],
    "machines": [{"name": "router", "role": "router", "container": "bgp-router", "state": "running",
                  "ips": ["fd64:0:6440:100::1", "[bold]x[/]"]}],
    "pods": [{"namespace": "default", "name": "web-" + "x" * 120, "node": "node1",
              "ips": ["10.244.0.2", "fd00:10:244:100::2"], "ports": ["8080/TCP"], "ready": True, "restarts": 0,
              "processes": []}],
    "links": [], "bgp": {},
}


def test_addresses_and_brackets_print_as_they_are_and_whole_in_a_pipe(capsys):
    console = base.console()
    assert not console.is_terminal  # pytest captures stdout, as a pipe would
    show.status(console, STATUS)
    text = capsys.readouterr().out
    for value in ("fd64:0:6440:100::1", "fd00:10:244:100::/64", "fd00:10:244:100::2", "[bold]x[/]",
                  "web-" + "x" * 120):
        assert value in text, value
    assert "💯" not in text and "…" not in text


def test_messages_on_stderr_are_literal_too(capsys):
    base.console(stderr=True).print(base.styled(("error:", "red"), " fd64:0:6440:100::1 [x]"))
    assert "error: fd64:0:6440:100::1 [x]" in capsys.readouterr().err


def test_every_verb_has_an_example_in_its_help():
    import click

    from testbed.cli import main

    def commands(group: click.Group, prefix: str = ""):
        for name in group.list_commands(click.Context(group)):
            cmd = group.get_command(click.Context(group), name)
            yield f"{prefix}{name}", cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, f"{prefix}{name} ")

    lacking = [name for name, cmd in commands(main) if "Example" not in (cmd.help or "")]
    assert lacking == []


def test_each_verb_is_registered_by_the_module_the_lazy_group_names():
    import importlib

    from testbed.cli import VERBS, main

    for module in set(VERBS.values()):
        importlib.import_module(f"testbed.cli.{module}")
    assert {name: cmd.callback.__module__ for name, cmd in main.commands.items()} == \
        {name: f"testbed.cli.{module}" for name, module in VERBS.items()}


def test_a_mesh_too_big_to_read_is_counted_and_its_broken_links_listed(capsys):
    link = {"type": "vxlan", "fromIf": "vxlan0", "toIf": "vxlan0", "state": "up"}
    mesh = [{**link, "from": f"node{a}", "to": f"node{b}"} for a in range(1, 21) for b in range(a + 1, 21)]
    mesh[7] = {**mesh[7], "state": "down"}
    show.status(base.console(), {**STATUS, "links": mesh})
    text = capsys.readouterr().out
    assert "links: 190" in text and "vxlan │ up    │ 189" in text and "vxlan │ down  │ 1" in text
    assert f"{mesh[7]['from']}:vxlan0" in text and f"{mesh[8]['from']}:vxlan0 │ {mesh[8]['to']}" not in text

    show.status(base.console(), {**STATUS, "links": mesh[:3]})
    text = capsys.readouterr().out
    assert all(f"{m['from']}:vxlan0 │ {m['to']}:vxlan0" in text for m in mesh[:3])
