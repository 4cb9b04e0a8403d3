"""Which cgroup files move a forked agent into its node's cgroups (agent/zygote.py), on the layouts engines use."""

from testbed.agent.zygote import cgroup_files

V1 = """\
30 24 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
"""
V1_PROC = """\
12:pids:/docker/abc
5:memory:/docker/abc
3:cpuacct,cpu:/docker/abc
1:name=systemd:/docker/abc
0::/docker/abc
"""


def test_every_v1_hierarchy_and_the_unified_one_under_the_root():
    assert cgroup_files(V1, V1_PROC, "/proc/7/root") == [
        "/proc/7/root/sys/fs/cgroup/pids/docker/abc/cgroup.procs",
        "/proc/7/root/sys/fs/cgroup/memory/docker/abc/cgroup.procs",
        "/proc/7/root/sys/fs/cgroup/cpu,cpuacct/docker/abc/cgroup.procs",
        "/proc/7/root/sys/fs/cgroup/systemd/docker/abc/cgroup.procs",
        "/proc/7/root/sys/fs/cgroup/unified/docker/abc/cgroup.procs",
    ]


def test_cgroup2_alone():
    mountinfo = "28 23 0:25 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"
    assert cgroup_files(mountinfo, "0::/system.slice/docker-abc.scope\n", "") == [
        "/sys/fs/cgroup/system.slice/docker-abc.scope/cgroup.procs"]


def test_a_hierarchy_the_host_does_not_mount_is_left_out():
    assert cgroup_files(V1, "9:freezer:/docker/abc\n4:memory:/\n", "") == ["/sys/fs/cgroup/memory/cgroup.procs"]
