"""The command line ends without the interpreter's teardown (__main__.leave): what a normal exit guarantees still
holds — the exit code, a message given as the code, exit handlers, buffered output, and a thread still writing."""

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=30)


def test_codes_handlers_and_buffered_output_survive():
    done = _run("import atexit, sys\nfrom testbed.__main__ import leave\n"
                "atexit.register(lambda: print('handler ran'))\n"
                "sys.stdout.write('buffered, no newline')\nleave(3)")
    assert done.returncode == 3
    assert done.stdout == "buffered, no newlinehandler ran\n"
    assert _run("from testbed.__main__ import leave\nleave(None)").returncode == 0


def test_a_message_as_the_code_is_printed_and_exits_1():
    done = _run("from testbed.__main__ import leave\nleave('no lab named x')")
    assert (done.returncode, done.stderr) == (1, "no lab named x\n")


def test_a_thread_still_running_is_waited_for(tmp_path):
    out = tmp_path / "written"
    done = _run("import threading, time\nfrom testbed.__main__ import leave\n"
                f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(out)!r}, 'w').write('x'))).start()\n"
                "leave(0)")
    assert done.returncode == 0
    assert out.read_text() == "x"


def test_the_command_line_keeps_its_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: testbed/v1alpha1\nkind: Topology\nname: x\nnodes: 0\n")
    cli = [sys.executable, "-m", "testbed"]
    assert subprocess.run([*cli, "version"], capture_output=True, check=False).returncode == 0
    invalid = subprocess.run([*cli, "up", str(bad)], capture_output=True, text=True, check=False)
    assert invalid.returncode == 2 and "nodes" in invalid.stderr
    assert subprocess.run([*cli, "no-such-verb"], capture_output=True, check=False).returncode == 2
